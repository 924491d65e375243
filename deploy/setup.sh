#!/usr/bin/env bash
# Installs what scepwatch needs to build and test on Debian 12 (as root, or
# through sudo).  Safe to run again: it installs only what is missing.
set -euo pipefail

PKGS=(build-essential cmake pkg-config
      libprotobuf-c-dev protobuf-c-compiler libnng-dev libmbedtls-dev libzstd-dev
      libsqlite3-dev libcmocka-dev libjansson-dev libexpat1-dev libinih-dev libxxhash-dev
      python3 clang libclang-rt-14-dev
      sqlite3)    # the shell: the benchmarks' baseline (deploy/bench.sh)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#PKGS[@]} packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
