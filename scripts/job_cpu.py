#!/usr/bin/env python3
"""CPU time per job of examples/job_cost.rs, several builds side by side.

Runs each (binary, kind, metrics) variant ROUNDS times, interleaved, and
prints the median [min-max] of the submit and drain phases' CPU ns per job.

    python3 scripts/job_cpu.py --rounds 15 --jobs 200000 \\
        --bin before=/tmp/before/job_cost --bin after=target/release/examples/job_cost \\
        untracked:on untracked:off tracked:on
"""
import argparse
import re
import statistics
import subprocess

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=15)
parser.add_argument("--jobs", type=int, default=200_000)
parser.add_argument("--bin", action="append", required=True, help="NAME=PATH")
parser.add_argument("variants", nargs="+", help="KIND:on|off")
args = parser.parse_args()
bins = [b.split("=", 1) for b in args.bin]
results = {}
for _ in range(args.rounds):
    for variant in args.variants:
        kind, metrics = variant.split(":")
        for name, path in bins:
            out = subprocess.run([path, kind, str(args.jobs), metrics],
                                 capture_output=True, text=True, check=True).stdout
            m = re.search(r"submit ([\d.]+) drain ([\d.]+)", out)
            results.setdefault((variant, name), []).append((float(m[1]), float(m[2])))
print(f"{args.rounds} rounds of {args.jobs} jobs; CPU ns per job, median [min-max]")
for (variant, name), runs in results.items():
    cells = []
    for i, phase in enumerate(["submit", "drain", "sum"]):
        xs = [r[0] + r[1] for r in runs] if phase == "sum" else [r[i] for r in runs]
        cells.append(f"{phase} {statistics.median(xs):6.1f} [{min(xs):.1f}-{max(xs):.1f}]")
    print(f"{variant:18} {name:8} " + "  ".join(cells))
