#!/usr/bin/env bash
# Jobs per second one harbor-server replica takes in and runs, in memory
# and with the PostgreSQL store attached (docs/benchmarks.md, "The store
# under a replica"): wrk POSTs empty jobs ({"kind":"sleep","ms":0}) for
# DURATION seconds, ROUNDS times, alternating the two modes so that the
# machine's noise falls on both alike. Prints one line per round.
#
#   HARBOR_DATABASE_URL=postgres://... scripts/bench_store.sh [ROUNDS] [DURATION]
#
# Needs wrk and a release build (cargo build --release -p harbor-server).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
duration=${2:-10}
: "${HARBOR_DATABASE_URL:?set HARBOR_DATABASE_URL to a PostgreSQL the store may write to}"
server=target/release/harbor-server
lua=$(mktemp)
trap 'rm -f "$lua"' EXIT
cat >"$lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"kind":"sleep","ms":0}'
wrk.headers["Content-Type"] = "application/json"
LUA
port=7899
run() { # mode
    local args=(--addr 127.0.0.1:$port --job-queue 100000 --retain-finished 1000)
    if [ "$1" = store ]; then
        args+=(--database-url "$HARBOR_DATABASE_URL" --replica-id bench)
    fi
    env -u HARBOR_DATABASE_URL RUST_LOG=warn "$server" "${args[@]}" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -sf "localhost:$port/stats" >/dev/null && break; sleep 0.1; done
    local out rps non2xx
    out=$(wrk -t2 -c32 -d"${duration}s" -s "$lua" "http://127.0.0.1:$port/jobs")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    local completed written buffered overflowed
    completed=$(curl -s "localhost:$port/stats" | sed -E 's/.*"jobs":\{[^}]*"completed":([0-9]+).*/\1/')
    if [ "$1" = store ]; then
        # The store's figures once the replica is idle: everything written?
        for _ in $(seq 100); do
            buffered=$(curl -s "localhost:$port/metrics" | awk '/^harbor_store_buffered_jobs/ {print $2}')
            [ "$buffered" = 0 ] && break
            sleep 0.1
        done
        written=$(curl -s "localhost:$port/metrics" | awk '/^harbor_store_transitions_written_total/ {print $2}')
        overflowed=$(curl -s "localhost:$port/metrics" | awk '/^harbor_store_overflowed_total/ {print $2}')
        echo "$1 rps=$rps non2xx=${non2xx:-0} completed=$completed written=$written buffered=$buffered overflowed=$overflowed"
    else
        echo "$1 rps=$rps non2xx=${non2xx:-0} completed=$completed"
    fi
    kill -TERM "$pid"
    wait "$pid" || true
}
for round in $(seq "$rounds"); do
    echo "round $round ($(cut -d' ' -f1-3 /proc/loadavg))"
    run memory
    run store
done
