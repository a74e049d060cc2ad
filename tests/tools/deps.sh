#!/bin/sh
# Installs the Debian packages suppressd needs to build, run and test, when missing.
# `make run` and `make test` call this first, so a fresh Debian/Ubuntu machine needs no
# other set-up. Only missing packages are installed; nothing happens when all are there.
set -eu
PKGS="build-essential pkg-config libhiredis-dev libevent-dev libcurl4-openssl-dev \
libjansson-dev libssl-dev libcmocka-dev redis-server redis-tools curl \
python3 python3-pytest python3-yaml python3-jsonschema"
[ "${1:-}" = "--test" ] && PKGS="$PKGS valgrind haproxy"
# make bench: load generator and plots; make scale-test: the load balancer.
[ "${1:-}" = "--bench" ] && PKGS="$PKGS wrk gnuplot-nox"
[ "${1:-}" = "--scale" ] && PKGS="$PKGS haproxy"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "suppressd: installing missing Debian packages:$missing" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "suppressd: no apt-get here; install the equivalents of:$missing" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "suppressd: run as root or install:$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
