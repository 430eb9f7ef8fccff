#!/bin/sh
# Instructions per job, per thread, from examples/job_cost.rs under callgrind:
# (instructions for N jobs - for 0 jobs) / N, for the submitting thread (the
# main thread, thread 1) and the worker.
#
#   scripts/job_cost.sh KIND [on|off] [N]
#
# KIND: floor, untracked, tracked, tracked-progress. Build first:
#   cargo build --release --example job_cost
set -eu
kind=$1
metrics=${2:-on}
n=${3:-50000}
bin=${BIN:-target/release/examples/job_cost}
dir=$(mktemp -d)
total() { # $1: jobs -> "submitter worker" instructions
    valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$dir/cg.$1" "$bin" "$kind" "$1" "$metrics" >/dev/null 2>&1
    sub=$(grep '^summary:' "$dir/cg.$1-01" | awk '{print $2}')
    # floor: thread 2 is the worker; harbor: thread 2 built the pool (and
    # calibrated the clock), the worker is the busier of the two it started.
    if [ "$kind" = floor ]; then skip=1; else skip=2; fi
    work=$(for f in "$dir"/cg."$1"-*; do
        t=${f##*-}
        [ "${t#0}" -gt "$skip" ] && grep '^summary:' "$f" | awk '{print $2}'
    done | sort -n | tail -n 1)
    echo "$sub $work"
}
set -- $(total 0) $(total "$n")
awk -v s0="$1" -v w0="$2" -v s1="$3" -v w1="$4" -v n="$n" -v k="$kind" -v m="$metrics" 'BEGIN {
    s = (s1 - s0) / n; w = (w1 - w0) / n;
    printf "%-17s %-3s submitter %7.1f  worker %7.1f  total %7.1f\n", k, m, s, w, s + w }'
rm -rf "$dir"
