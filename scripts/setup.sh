#!/usr/bin/env bash
# Prepare a checkout: Python venv with the project installed, sao (npm) and
# the web root build/web.  Idempotent and fast when nothing changed: each step
# keeps a stamp keyed on the hash of its inputs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- Python venv ----------------------------------------------------------
find_python() {
    local py
    for py in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$py"; return 0
        fi
    done
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python)" || die "Python >= 3.11 is needed (set PYTHON=/path/to/python3.11)"
    say "creating $VENV with $("$PY" --version)"
    "$PY" -m venv "$VENV" || die "python -m venv failed (Debian: apt-get install python3-venv)"
fi

# --- Debian libraries of the gate box's drivers -----------------------------
# zbar (QR backend), PC/SC headers (pyscard builds from source), pcscd and
# the virtual reader (RFID integration tests).
BOX_DEBS="libzbar0 libpcsclite-dev pcscd vsmartcard-vpcd"
missing=""
for deb in $BOX_DEBS; do
    dpkg -s "$deb" >/dev/null 2>&1 || missing="$missing $deb"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian packages:$missing"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq $missing >/dev/null
    else
        die "the gate box needs Debian packages:$missing (run as root, or apt-get install them)"
    fi
fi

PY_STAMP="$VENV/.scenic-setup.sha256"
py_hash="$(hash_of pyproject.toml common/pyproject.toml iot-box/pyproject.toml analytics/pyproject.toml)"
if [ "$(cat "$PY_STAMP" 2>/dev/null)" != "$py_hash" ]; then
    say "installing Python packages (common, scenic, iot-box)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e common -e '.[test]' \
        -e 'iot-box[test,pyzbar,pcsc,face]' \
        -e 'analytics[postgresql,dashboards,notebooks]'
    # See iot-box/pyproject.toml: its "dlib" requirement is met by dlib-bin.
    "$VENV/bin/python" -m pip install --quiet --no-deps 'face_recognition>=1.3'
    echo "$py_hash" > "$PY_STAMP"
else
    say "Python packages up to date"
fi

# --- sao (npm) --------------------------------------------------------------
command -v npm >/dev/null 2>&1 || die "npm is needed for the web client (Debian: apt-get install npm, or Node.js >= 18)"
NPM_STAMP="web/node_modules/.scenic-setup.sha256"
if [ -f web/package-lock.json ]; then
    npm_hash="$(hash_of web/package.json web/package-lock.json)"
else
    npm_hash="$(hash_of web/package.json)"
fi
if [ "$(cat "$NPM_STAMP" 2>/dev/null)" != "$npm_hash" ]; then
    if [ -f web/package-lock.json ]; then
        say "installing sao (npm ci)"
        (cd web && npm ci --no-audit --no-fund --loglevel=error)
    else
        say "installing sao (npm install; commit web/package-lock.json)"
        (cd web && npm install --no-audit --no-fund --loglevel=error)
        npm_hash="$(hash_of web/package.json web/package-lock.json)"
    fi
    echo "$npm_hash" > "$NPM_STAMP"
else
    say "sao up to date"
fi

# --- web root ----------------------------------------------------------------
# sao's index.html loads dist/, images/... and node_modules/<dep>/... relative
# to itself; npm hoists its dependencies into web/node_modules.  So build/web
# gets a link to each of sao's entries plus node_modules -> web/node_modules.
SAO="web/node_modules/tryton-sao"
[ -f "$SAO/index.html" ] && [ -f "$SAO/dist/tryton-sao.js" ] \
    || die "$SAO has no index.html or dist/ (is tryton-sao ~8.0 installed?)"
WEB="build/web"
mkdir -p "$WEB"
for entry in "$SAO"/*; do
    name="$(basename "$entry")"
    [ "$name" = node_modules ] && continue
    ln -sfn "../../$SAO/$name" "$WEB/$name"
done
ln -sfn ../../web/node_modules "$WEB/node_modules"
# index.html also asks for custom.js/custom.css: empty ones avoid 404s.
[ -e "$WEB/custom.js" ] || : > "$WEB/custom.js"
[ -e "$WEB/custom.css" ] || : > "$WEB/custom.css"
[ -f "$WEB/node_modules/jquery/dist/jquery.js" ] \
    || die "$WEB/node_modules does not resolve sao's dependencies"
say "web root ready: $WEB"
