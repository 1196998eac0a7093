#!/usr/bin/env bash
# The browser test drives Debian's Chromium through Debian's ChromeDriver
# (selenium must never download a browser).  Install them when missing.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure_chromium: /usr/bin/chromium and /usr/bin/chromedriver are needed;" \
        "install the Debian packages 'chromium' and 'chromium-driver' (as root)" >&2
    exit 1
fi
echo "ensure_chromium: installing chromium and chromium-driver (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    || { echo "ensure_chromium: packages installed but binaries missing" >&2; exit 1; }
