#!/usr/bin/env bash
# The browser test drives Debian's Chromium through Debian's ChromeDriver
# (selenium must never download a browser).  Install them when missing.
set -euo pipefail
# The dashboards' browser test checks their Chinese labels render: a CJK
# font (any; fonts-wqy-zenhei is 16 MB).
have_cjk() { command -v fc-list >/dev/null && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; }
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && have_cjk; then
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
have_cjk || apt-get install -y -qq --no-install-recommends fonts-wqy-zenhei >/dev/null
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    || { echo "ensure_chromium: packages installed but binaries missing" >&2; exit 1; }
