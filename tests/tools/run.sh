#!/bin/sh
# `make run`: suppressd on an embedded default.
#
# Without REDIS_URL, a private redis-server is started under ./var/redis (port
# $SUPPRESS_RUN_REDIS_PORT, default 6380) and stopped again when the service exits.
# Without INTERCOM_CLIENT_SECRET, the demo secret "demo-secret" is used so `make demo`
# can sign deliveries. Customer.io and Intercom stay in dry run unless their credentials
# are set. Any other variable of the README's configuration table passes through.
set -eu
cd "$(dirname "$0")/../.."

started_redis=""
if [ -z "${REDIS_URL:-}" ]; then
    port=${SUPPRESS_RUN_REDIS_PORT:-6380}
    mkdir -p var/redis
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "make run: redis-server is not installed (apt-get install redis-server)," \
             "or set REDIS_URL to an existing Redis" >&2
        exit 1
    fi
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "make run: using the Redis already answering on 127.0.0.1:$port" >&2
    else
        redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/var/redis" \
            --appendonly yes --appendfsync everysec --save "" \
            --daemonize yes --pidfile "$PWD/var/redis/redis.pid" \
            --logfile "$PWD/var/redis/redis.log"
        started_redis=1
        i=0
        until redis-cli -p "$port" ping >/dev/null 2>&1; do
            i=$((i + 1))
            [ "$i" -gt 100 ] && { echo "make run: redis-server did not start" >&2; exit 1; }
            sleep 0.05
        done
        echo "make run: started redis-server on 127.0.0.1:$port (data in var/redis)" >&2
    fi
    REDIS_URL="redis://127.0.0.1:$port/0"
    export REDIS_URL
fi

stop_redis() {
    if [ -n "$started_redis" ] && [ -f var/redis/redis.pid ]; then
        kill "$(cat var/redis/redis.pid)" 2>/dev/null || true
    fi
}
trap stop_redis EXIT
trap 'exit 0' INT TERM

: "${INTERCOM_CLIENT_SECRET:=demo-secret}"
export INTERCOM_CLIENT_SECRET
echo "make run: suppressd on ${SUPPRESS_LISTEN:-0.0.0.0:8080}; try: curl localhost:8080/readyz (then: make demo)" >&2
bin/suppressd "$@"
