#!/bin/sh
# `make bench`: builds nothing itself (the Makefile's bench target has built bin/suppressd
# and build/bench/ceiling), checks the tools, then runs bench/bench.py, which starts its
# own redis-server, suppressd, Customer.io simulator and bench/ceiling, drives them with
# wrk and redis-benchmark, and writes bench/RESULTS.md, bench/latency.png and
# bench/out/results.json. About five minutes; knobs are listed in bench/bench.py.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
missing=""
for tool in wrk redis-server redis-benchmark gnuplot; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "bench: missing:$missing (Debian: wrk redis-server redis-tools gnuplot-nox;" \
         "make bench installs them through tests/tools/deps.sh --bench)" >&2
    exit 1
fi
[ -x bin/suppressd ] && [ -x build/bench/ceiling ] || {
    echo "bench: build first: make bin/suppressd build/bench/ceiling" >&2
    exit 1
}
exec "$PY" bench/bench.py "$@"
