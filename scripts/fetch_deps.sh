#!/usr/bin/env bash
# fetch_deps.sh — downloads the Debian packages of cJSON (runtime and headers)
# into .deps/, for a GPU machine that has no package access: the GPU workflow
# unpacks them there. Run on a machine with apt (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps
cd .deps
apt-get download libcjson1 libcjson-dev >/dev/null
ls -1 *.deb
