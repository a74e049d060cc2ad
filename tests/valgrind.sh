#!/bin/sh
# Runs the unit tests and a webhook/query replay against the optimized binary under
# valgrind memcheck. Prints "valgrind ok <what>" per clean run; exits non-zero on any
# memory error or definite/indirect leak. (`make valgrind`, and part of `make test` when
# valgrind is installed.)
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-/usr/bin/python3}
VG="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
status=0

for t in build/rel/tests/test_*; do
    [ -x "$t" ] || continue
    if $VG "$t" >/dev/null 2>build/valgrind-unit.err; then
        echo "valgrind ok $(basename "$t")"
    else
        echo "valgrind FAILED $(basename "$t")"; cat build/valgrind-unit.err
        status=1
    fi
done

# The service: a private Redis, every fixture replayed, queries, then SIGTERM.
tmp=$(mktemp -d)
rport=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sport=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp" --save "" --appendonly no \
    --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log"
REDIS_URL="redis://127.0.0.1:$rport/0" SUPPRESS_LISTEN="127.0.0.1:$sport" SUPPRESS_THREADS=2 \
    INTERCOM_CLIENT_SECRET=vg-secret $VG --log-file="$tmp/vg.log" bin/suppressd 2>"$tmp/svc.log" &
pid=$!
i=0
until curl -sf "http://127.0.0.1:$sport/readyz" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 300 ]; then echo "valgrind: service did not become ready"; status=1; break; fi
    sleep 0.1
done
"$PY" tests/tools/replay.py --url "http://127.0.0.1:$sport" --secret vg-secret \
    tests/fixtures/intercom/*.json >"$tmp/replay.log" || { echo "valgrind: replay failed"; cat "$tmp/replay.log"; status=1; }
for path in /v1/users/u-1001 "/v1/users/u-1002/suppression?campaign=renewal" /metrics /healthz; do
    curl -sf "http://127.0.0.1:$sport$path" >/dev/null || { echo "valgrind: GET $path failed"; status=1; }
done
curl -sf -X POST -d '{"campaign":"renewal","user_ids":["u-1001","u-1002","nobody"]}' \
    "http://127.0.0.1:$sport/v1/suppression/check" >/dev/null || { echo "valgrind: check failed"; status=1; }
kill -TERM "$pid"
wait "$pid"
rc=$?
kill "$(cat "$tmp/redis.pid")" 2>/dev/null
if [ "$rc" -eq 0 ] && [ ! -s "$tmp/vg.log" ]; then
    echo "valgrind ok service"
else
    echo "valgrind FAILED service (exit $rc)"; cat "$tmp/vg.log"; tail -5 "$tmp/svc.log"
    status=1
fi
rm -rf "$tmp"
exit $status
