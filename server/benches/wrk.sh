#!/usr/bin/env bash
# wrk against harbor-server and against the job service as it was before it
# (examples/web_server.rs on tiny_http, built from git history), in the same
# run, on this machine. Results are reported in docs/benchmarks.md.
#
#   bash server/benches/wrk.sh [ROUNDS] [SECONDS]      # defaults: 3 rounds of 5 s
#
# For each round, each server, each endpoint (GET /stats, POST /jobs with
# {"kind":"sleep","ms":0}) and each connection count (16, 64, 256):
#   wrk -t2 -cN -dS --latency
# and prints requests/s, p50 and p99 latency, non-2xx answers, wrk's socket
# errors, and how many of the connections had been served: one second before
# the end of each wrk run, `ss` lists the server's established sockets on its
# port; a socket counts as served once the server has sent bytes on it
# (`bytes_sent` in `ss -i`). The two servers run side by side and the rounds
# alternate between them, so background load hits both alike.
#
# Environment: OLD_REF (default 10bb213, the last commit with
# examples/web_server.rs on tiny_http), CONNS (default "16 64 256"),
# WORK (default target/wrk-bench: scratch files and the old server's build,
# kept for the next run). Both servers run with RUST_LOG=warn, so that the
# old one does not pay for its per-request info line. Needs wrk (installed
# with apt-get when missing and run as root), ss (iproute2), git, cargo.
set -euo pipefail

ROUNDS=${1:-3}
DURATION=${2:-5}
CONNS=${CONNS:-"16 64 256"}
OLD_REF=${OLD_REF:-10bb213}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WORK=${WORK:-$ROOT/target/wrk-bench}
mkdir -p "$WORK"
(( DURATION >= 2 )) || { echo "wrk.sh: SECONDS must be at least 2" >&2; exit 2; }

if ! command -v wrk >/dev/null; then
    if [[ $(id -u) == 0 ]]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk.sh: wrk is not installed (apt-get install wrk)" >&2
        exit 1
    fi
fi
command -v ss >/dev/null || { echo "wrk.sh: ss (iproute2) is not installed" >&2; exit 1; }

echo "== building harbor-server (release)" >&2
cargo build --release --quiet -p harbor-server --manifest-path "$ROOT/Cargo.toml"
NEW_BIN=$ROOT/target/release/harbor-server

# The old server: the library and examples/web_server.rs as of OLD_REF, in a
# throwaway package with only the example's dependencies (pinned by that
# commit's Cargo.lock).
echo "== building examples/web_server.rs of $OLD_REF (release)" >&2
OLD=$WORK/old-$OLD_REF
if [[ ! -d $OLD/lib ]]; then
    mkdir -p "$OLD/lib"
    git -C "$ROOT" archive "$OLD_REF" | tar -x -C "$OLD/lib"
fi
git -C "$ROOT" show "$OLD_REF:examples/web_server.rs" > "$OLD/main.rs"
cp "$OLD/lib/Cargo.lock" "$OLD/Cargo.lock" 2>/dev/null || true
cat > "$OLD/Cargo.toml" <<'EOF'
[package]
name = "old-web-server"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "old-web-server"
path = "main.rs"

[dependencies]
harbor-pool = { path = "lib" }
ctrlc = { version = "3.5.2", features = ["termination"] }
env_logger = "0.11.11"
log = "0.4.35"
serde_json = "1.0.154"
tiny_http = "0.12.0"

[workspace]
EOF
cargo build --release --quiet --manifest-path "$OLD/Cargo.toml" --target-dir "$OLD/target"
OLD_BIN=$OLD/target/release/old-web-server

cat > "$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"kind":"sleep","ms":0}'
wrk.headers["Content-Type"] = "application/json"
EOF

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# start NAME BINARY: starts a server on a free port; sets URL_<NAME>.
start() {
    local name=$1 binary=$2
    RUST_LOG=warn "$binary" --addr 127.0.0.1:0 >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    for _ in $(seq 300); do
        if grep -q 'listening on http://' "$WORK/$name.out"; then
            local url
            url=$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/$name.out" | head -1)
            printf -v "URL_$name" '%s' "$url"
            return
        fi
        sleep 0.1
    done
    echo "wrk.sh: $name did not print its address; stderr:" >&2
    cat "$WORK/$name.err" >&2
    exit 1
}
start old "$OLD_BIN"
start new "$NEW_BIN"
echo "== old ($OLD_REF, tiny_http): $URL_old; new (harbor-server): $URL_new" >&2

# to_ms VALUE: wrk's 1.23us / 4.56ms / 1.20s as milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n
    }'
}

RESULTS=$WORK/results.tsv
printf 'server\tendpoint\tconns\tround\trps\tp50_ms\tp99_ms\tserved\tsockets\tnon2xx\tsocket_errors\tok_rps\n' >"$RESULTS"
printf '%-4s %-11s %5s %3s %10s %10s %9s %9s %9s %7s %s\n' \
    server endpoint conns rnd 'req/s' '2xx/s' 'p50 ms' 'p99 ms' served non2xx 'socket errors' >&2

LOADS=()
for round in $(seq "$ROUNDS"); do
    LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
    for conns in $CONNS; do
        for endpoint in stats jobs; do
            for server in old new; do
                url_var=URL_$server
                url=${!url_var}
                port=${url##*:}
                if [[ $endpoint == stats ]]; then
                    args=("$url/stats")
                else
                    args=(-s "$WORK/post.lua" "$url/jobs")
                fi
                # One second before wrk ends: which of the server's
                # sockets has it sent anything on?
                (
                    sleep $((DURATION - 1))
                    ss -tinH state established "( sport = :$port )" >"$WORK/ss.txt"
                ) &
                sampler=$!
                wrk -t2 -c"$conns" -d"${DURATION}s" --latency "${args[@]}" >"$WORK/wrk.txt" 2>&1
                wait "$sampler"
                rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.txt")
                # "N requests in 5.00s": the answers that were not 503s and
                # the like, per second.
                total=$(awk '/ requests in / {print $1}' "$WORK/wrk.txt")
                secs=$(awk '/ requests in / {sub(/s,?$/, "", $4); print $4}' "$WORK/wrk.txt")
                p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$WORK/wrk.txt")")
                p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")")
                non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
                ok_rps=$(awk -v t="${total:-0}" -v n="${non2xx:-0}" -v s="${secs:-1}" \
                    'BEGIN {printf "%.2f", (t - n) / (s > 0 ? s : 1)}')
                errors=$(awk -F': ' '/Socket errors/ {print $2}' "$WORK/wrk.txt")
                sockets=$(awk '/^[^ \t]/ {n++} END {print n + 0}' "$WORK/ss.txt")
                served=$(awk '/bytes_sent:/ {n++} END {print n + 0}' "$WORK/ss.txt")
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$endpoint" \
                    "$conns" "$round" "${rps:-0}" "$p50" "$p99" "$served" "$sockets" \
                    "${non2xx:-0}" "${errors:-none}" "$ok_rps" >>"$RESULTS"
                printf '%-4s %-11s %5s %3s %10s %10s %9s %9s %9s %7s %s\n' "$server" \
                    "$([[ $endpoint == stats ]] && echo 'GET /stats' || echo 'POST /jobs')" \
                    "$conns" "$round" "${rps:-0}" "$ok_rps" "$p50" "$p99" "$served/$sockets" \
                    "${non2xx:-0}" "${errors:-none}" >&2
            done
        done
    done
done

# Medians and ranges across rounds, as a Markdown table.
# stat COLUMN FORMAT ROWS: "median (min-max)" of one column, each number
# printed with FORMAT.
stat() {
    local column=$1 format=$2
    shift 2
    printf '%s\n' "$@" | cut -f"$column" | sort -g | awk -v f="$format" '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf f " (" f "-" f ")", m, v[1], v[NR]
        }'
}
median() { stat "$1" "%.0f" "${@:2}" | cut -d' ' -f1; }

LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
echo
echo "wrk -t2 -d${DURATION}s --latency, $ROUNDS rounds; median (min-max) across rounds;" \
    "1-minute load average at each round's start and at the end: ${LOADS[*]}"
echo
echo "| endpoint | conns | server | req/s | 2xx/s | p50 ms | p99 ms | connections served (worst round) | non-2xx (total) |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|"
for endpoint in stats jobs; do
    for conns in $CONNS; do
        for server in old new; do
            mapfile -t rows < <(awk -F'\t' -v s="$server" -v e="$endpoint" -v c="$conns" \
                '$1 == s && $2 == e && $3 == c' "$RESULTS")
            served=$(printf '%s\n' "${rows[@]}" | awk -F'\t' '
                NR == 1 || $8 / ($9 ? $9 : 1) < worst { worst = $8 / ($9 ? $9 : 1); w = $8 "/" $9 }
                END { print w }')
            non2xx=$(printf '%s\n' "${rows[@]}" | awk -F'\t' '{ n += $10 } END { print n + 0 }')
            name=$([[ $server == old ]] && echo "tiny_http ($OLD_REF)" || echo "harbor-server")
            label=$([[ $endpoint == stats ]] && echo 'GET /stats' || echo 'POST /jobs')
            echo "| $label | $conns | $name | $(stat 5 %.0f "${rows[@]}") | $(stat 12 %.0f "${rows[@]}") |" \
                "$(stat 6 %.2f "${rows[@]}") | $(stat 7 %.2f "${rows[@]}") | $served | $non2xx |"
        done
    done
done
echo
for endpoint in stats jobs; do
    for column in 5 12; do
        old=$(median "$column" "$(awk -F'\t' -v e="$endpoint" '$1 == "old" && $2 == e && $3 == 64' "$RESULTS")")
        new=$(median "$column" "$(awk -F'\t' -v e="$endpoint" '$1 == "new" && $2 == e && $3 == 64' "$RESULTS")")
        awk -v e="$endpoint" -v o="$old" -v n="$new" -v c="$column" 'BEGIN {
            printf "%s at 64 connections: new/old %s %.2fx (%s vs %s, medians)\n",
                (e == "stats" ? "GET /stats" : "POST /jobs"), (c == 5 ? "req/s" : "2xx/s"),
                (o > 0 ? n / o : 0), n, o
        }'
    done
done
echo
echo "raw results: $RESULTS"
