#!/usr/bin/env python3
"""Turn criterion's results into docs/benchmarks.svg and a Markdown table.

Reads target/criterion/<group>/<function>/new/{estimates,benchmark}.json as
written by `cargo bench --bench pools`, and writes:

* docs/benchmarks.svg: a grouped bar chart, one group per workload, one bar
  per pool, height = median time per job on a log scale (the naive
  thread-per-job pool is two orders of magnitude slower than the rest);
* on stdout: a Markdown table of every pool on every workload, with the
  median per iteration, the median per job and the ratio to the threadpool
  crate in the same workload.

Python 3 standard library only.

    python3 scripts/bench_chart.py [--criterion DIR] [--out FILE]
"""

import argparse
import json
import math
import sys
from pathlib import Path

WORKLOADS = [
    ("w1_one_submitter", "1: 100k empty jobs,", "one submitter"),
    ("w2_four_submitters", "2: 100k empty jobs,", "four submitters"),
    ("w3_panic_heavy", "3: panic-heavy,", "10% of jobs panic"),
    ("w5_tracking", "5: tracking overhead,", "submit+status+join"),
]
POOLS = [
    ("harbor_execute", "harbor execute (untracked)", "#1f5fa8"),
    ("harbor_submit", "harbor submit (tracked)", "#7fb2e5"),
    ("harbor_submit_status_join", "harbor submit + status + join", "#0b2f5c"),
    ("threadpool", "threadpool 1.8", "#e8812a"),
    ("rayon", "rayon 1.12 spawn", "#3a9a3a"),
    ("naive", "naive thread per job", "#8c8c8c"),
]
REFERENCE = "threadpool"


def load(criterion_dir):
    """{(group, function): (median ns per iteration, jobs per iteration)}"""
    results = {}
    for estimates in sorted(Path(criterion_dir).glob("*/*/new/estimates.json")):
        new = estimates.parent
        meta = json.loads((new / "benchmark.json").read_text())
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        jobs = (meta.get("throughput") or {}).get("Elements", 1)
        results[(meta["group_id"], meta["function_id"])] = (median, jobs)
    return results


def fmt_ns(ns):
    """A short label: 85, 412, 1.2k, 41k, 1.3M (ns)."""
    if ns < 1000:
        return f"{ns:.0f}" if ns >= 10 else f"{ns:.1f}"
    if ns < 10_000:
        return f"{ns / 1000:.1f}k"
    if ns < 1_000_000:
        return f"{ns / 1000:.0f}k"
    return f"{ns / 1e6:.1f}M"


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def table(results):
    lines = [
        "| workload | pool | jobs / iteration | median / iteration | median / job | vs threadpool (per job) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for group, title, subtitle in WORKLOADS:
        reference = results.get((group, REFERENCE))
        for pool, label, _ in POOLS:
            if (group, pool) not in results:
                continue
            median, jobs = results[(group, pool)]
            per_job = median / jobs
            if reference:
                ratio = per_job / (reference[0] / reference[1])
                ratio = f"{ratio:.2f}x time ({1 / ratio:.2f}x throughput)"
            else:
                ratio = "n/a"
            lines.append(
                f"| {title} {subtitle} | {label} | {jobs:,} | {fmt_time(median)} "
                f"| {per_job:,.0f} ns | {ratio} |"
            )
    return "\n".join(lines)


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(results):
    groups = [w for w in WORKLOADS if any((w[0], p[0]) in results for p in POOLS)]
    width, height = 960, 560
    left, right, top, bottom = 90, 20, 78, 150
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [m / j for (m, j) in results.values()]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values) * 1.5))

    def y(ns):
        frac = (math.log10(ns) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return top + plot_h * (1 - frac)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="28" font-size="19" font-weight="bold" text-anchor="middle">'
        "harbor-pool against its peers: median time per job (lower is better)</text>",
        f'<text x="{width / 2}" y="50" font-size="12.5" fill="#444" text-anchor="middle">'
        "criterion medians, 2 worker threads per pool; log scale; "
        "naive runs 2,000 jobs per iteration instead of 100,000, shown per job</text>",
    ]
    # Grid lines and y-axis labels at every power of ten, faint ones at 2x and 5x.
    exponent = round(math.log10(lo))
    while 10**exponent <= hi:
        for mult in (1, 2, 5):
            value = mult * 10**exponent
            if value < lo or value > hi:
                continue
            yy = y(value)
            major = mult == 1
            out.append(
                f'<line x1="{left}" y1="{yy:.1f}" x2="{width - right}" y2="{yy:.1f}" '
                f'stroke="{"#c8c8c8" if major else "#ececec"}" stroke-width="1"/>'
            )
            if major or mult == 5 and hi / lo < 1e5:
                out.append(
                    f'<text x="{left - 8}" y="{yy + 4:.1f}" font-size="{12 if major else 10}" '
                    f'fill="{"#222" if major else "#777"}" text-anchor="end">{fmt_time(value)}</text>'
                )
        exponent += 1
    out.append(
        f'<text transform="translate(22 {top + plot_h / 2}) rotate(-90)" font-size="13" '
        'text-anchor="middle">time per job (median, log scale)</text>'
    )
    # Bars.
    group_w = plot_w / len(groups)
    bar_w = min(34, group_w * 0.8 / 5)
    for gi, (group, title, subtitle) in enumerate(groups):
        present = [p for p in POOLS if (group, p[0]) in results]
        start = left + gi * group_w + (group_w - bar_w * len(present)) / 2
        for bi, (pool, label, color) in enumerate(present):
            median, jobs = results[(group, pool)]
            per_job = median / jobs
            x = start + bi * bar_w
            yy = y(per_job)
            out.append(
                f'<rect x="{x + 1:.1f}" y="{yy:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{top + plot_h - yy:.1f}" fill="{color}">'
                f"<title>{esc(label)}: {per_job:,.0f} ns per job</title></rect>"
            )
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{yy - 4:.1f}" font-size="10.5" '
                f'text-anchor="middle" fill="#222">{fmt_ns(per_job)}</text>'
            )
        cx = left + gi * group_w + group_w / 2
        out.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 20}" font-size="13" font-weight="bold" '
            f'text-anchor="middle">{esc(title)}</text>'
        )
        out.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 36}" font-size="12.5" '
            f'text-anchor="middle">{esc(subtitle)}</text>'
        )
        if gi:
            gx = left + gi * group_w
            out.append(
                f'<line x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{top + plot_h}" '
                'stroke="#dddddd" stroke-dasharray="4 4"/>'
            )
    # Axes.
    out.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#222"/>'
    )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#222"/>'
    )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 60}" font-size="13" '
        'text-anchor="middle">workload (numbers on bars: ns per job)</text>'
    )
    # Legend, two rows of three under the axis title.
    shown = [p for p in POOLS if any((g[0], p[0]) in results for g in groups)]
    per_row = 3
    col_w = plot_w / per_row
    for i, (pool, label, color) in enumerate(shown):
        lx = left + (i % per_row) * col_w + 20
        ly = top + plot_h + 84 + (i // per_row) * 24
        out.append(f'<rect x="{lx:.1f}" y="{ly - 11}" width="14" height="14" fill="{color}"/>')
        out.append(f'<text x="{lx + 20:.1f}" y="{ly + 1}" font-size="13">{esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", default="target/criterion")
    parser.add_argument("--out", default="docs/benchmarks.svg")
    args = parser.parse_args()
    results = load(args.criterion)
    if not results:
        sys.exit(f"no criterion results under {args.criterion}; run `cargo bench` first")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(chart(results))
    print(table(results))
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
