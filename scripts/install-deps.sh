#!/usr/bin/env bash
# Installs what building and testing shardserve needs: Debian packages, then npm test clients.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev libcjson-dev libevent-dev libpcre2-dev
      libutf8proc-dev libcurl4-openssl-dev libopenblas-dev libssl-dev libxxhash-dev libcmocka-dev libomp-dev curl python3 iproute2
      golang-go"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
fi
if [ -f tests/package.json ] && command -v npm >/dev/null; then
  (cd tests && npm install --no-audit --no-fund --loglevel=error)
fi
