#!/usr/bin/env python3
"""Turn criterion's results into docs/benchmarks.svg and a Markdown table.

Reads target/criterion/<group>/<function>/new/{estimates,benchmark}.json as
written by `cargo bench --bench pools` (and `--bench async`), and writes:

* docs/benchmarks.svg: a grouped bar chart, one group per workload, one bar
  per pool, height = median time per job on a log scale (the naive
  thread-per-job pool is two orders of magnitude slower than the rest);
* on stdout: a Markdown table of every pool on every workload, with the
  median per iteration, the median per job and the ratio to the threadpool
  crate in the same workload.

On a noisy machine, run `cargo bench` several times, copy target/criterion
aside after each run, and pass every copy with --criterion: each benchmark
then gets the median of its per-run medians, and the table shows the range
across runs.

With --issue11 it reads the groups of `cargo bench --bench floor` instead,
writes docs/benchmarks-issue11.svg and checks issue 11's targets.

Python 3 standard library only.

    python3 scripts/bench_chart.py [--issue11] [--criterion DIR ...] [--out FILE]
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

WORKLOADS = [
    ("w1_one_submitter", "1: 100k empty jobs,", "one submitter"),
    ("w2_four_submitters", "2: 100k empty jobs,", "four submitters"),
    ("w3_panic_heavy", "3: panic-heavy,", "10% of jobs panic"),
    ("w5_tracking", "5: tracking overhead,", "submit+status+join"),
    ("async_round_trip", "async round trip,", "submit + await, 64 in flight"),
]
POOLS = [
    ("harbor_execute", "harbor execute (untracked)", "#1f5fa8"),
    ("harbor_submit", "harbor submit (tracked)", "#7fb2e5"),
    ("harbor_submit_status_join", "harbor submit + status + join", "#0b2f5c"),
    ("threadpool", "threadpool 1.8", "#e8812a"),
    ("rayon", "rayon 1.12 spawn", "#3a9a3a"),
    ("naive", "naive thread per job", "#8c8c8c"),
    ("harbor_submit_await", "harbor submit + await", "#1f5fa8"),
    ("tokio_spawn_blocking", "tokio spawn_blocking + await", "#b03a2e"),
]
REFERENCE = "threadpool"

# `--issue11`: benches/floor.rs, its own chart (docs/benchmarks-issue11.svg).
I11_WORKLOADS = [
    ("i11_untracked_1", "untracked,", "one submitter"),
    ("i11_untracked_4", "untracked,", "four submitters"),
    ("i11_tracked", "tracked,", "submit + join"),
    ("i11_many_workers", "16 submitters,", "2 and 64 workers"),
    ("i11_features", "features,", "on and off"),
]
I11_POOLS = [
    ("floor", "floor: channel + box + catch_unwind", "#8c8c8c"),
    ("harbor_execute", "harbor execute", "#1f5fa8"),
    ("harbor_execute_metrics_off", "harbor execute, histograms off", "#6fa0d8"),
    ("threadpool", "threadpool 1.8", "#e8812a"),
    ("harbor_submit_join", "harbor submit + join", "#7fb2e5"),
    ("harbor_submit_join_retained", "harbor submit + join, all retained", "#0b2f5c"),
    ("execute_2w", "execute, 2 workers", "#1f5fa8"),
    ("execute_2w_joiner", "execute, 2 workers, a joiner", "#5b8fd0"),
    ("execute_64w", "execute, 64 workers", "#0b2f5c"),
    ("execute_64w_joiner", "execute, 64 workers, a joiner", "#3d6fa8"),
    ("submit_2w", "submit + join, 2 workers", "#7fb2e5"),
    ("submit_2w_joiner", "submit + join, 2 workers, a joiner", "#a9cdf0"),
    ("submit_64w", "submit + join, 64 workers", "#4f86c6"),
    ("submit_64w_joiner", "submit + join, 64 workers, a joiner", "#6fa0d8"),
    ("execute_metrics_on", "execute, histograms on", "#1f5fa8"),
    ("execute_metrics_off", "execute, histograms off", "#6fa0d8"),
    ("submit_join_metrics_on", "submit + join, histograms on", "#0b2f5c"),
    ("submit_join_metrics_off", "submit + join, histograms off", "#4f86c6"),
    ("submit_join_progress", "submit + join, progress reported", "#7fb2e5"),
]


def load_run(criterion_dir):
    """{(group, function): (median ns per iteration, jobs per iteration)}"""
    results = {}
    for estimates in sorted(Path(criterion_dir).glob("*/*/new/estimates.json")):
        new = estimates.parent
        meta = json.loads((new / "benchmark.json").read_text())
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        jobs = (meta.get("throughput") or {}).get("Elements", 1)
        results[(meta["group_id"], meta["function_id"])] = (median, jobs)
    return results


def load(criterion_dirs):
    """Per benchmark: (median across runs, jobs, [each run's median])."""
    runs = [load_run(d) for d in criterion_dirs]
    results = {}
    for key in sorted({key for run in runs for key in run}):
        medians = [run[key][0] for run in runs if key in run]
        jobs = next(run[key][1] for run in runs if key in run)
        results[key] = (statistics.median(medians), jobs, medians)
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


def fmt_axis(ns):
    """An axis label: 50 ns, 1 µs, 20 µs."""
    if ns < 1000:
        return f"{ns:g} ns"
    if ns < 1_000_000:
        return f"{ns / 1000:g} µs"
    return f"{ns / 1e6:g} ms"


def nice_below(value):
    """The largest 1-2-5 step at or below `value`."""
    exponent = math.floor(math.log10(value))
    for mult in (5, 2, 1):
        if mult * 10**exponent <= value:
            return mult * 10**exponent
    return 10**exponent


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def table(results):
    lines = [
        "| workload | pool | jobs / iteration | median / iteration | median / job "
        "| range / job across runs | vs threadpool (per job) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for group, title, subtitle in WORKLOADS:
        reference = results.get((group, REFERENCE))
        for pool, label, _ in POOLS:
            if (group, pool) not in results:
                continue
            median, jobs, runs = results[(group, pool)]
            per_job = median / jobs
            spread = f"{min(runs) / jobs:,.0f}-{max(runs) / jobs:,.0f} ns ({len(runs)})"
            if reference:
                ratio = per_job / (reference[0] / reference[1])
                ratio = f"{ratio:.2f}x time ({1 / ratio:.2f}x throughput)"
            else:
                ratio = "n/a"
            lines.append(
                f"| {title} {subtitle} | {label} | {jobs:,} | {fmt_time(median)} "
                f"| {per_job:,.0f} ns | {spread} | {ratio} |"
            )
    return "\n".join(lines)


def per_job(results, group, pool):
    if (group, pool) not in results:
        return None
    median, jobs, _ = results[(group, pool)]
    return median / jobs


def targets(results):
    """The issue's throughput targets, checked against the medians."""
    lines = ["| target | measured | met |", "|---|---|---|"]

    def row(text, value, ok):
        lines.append(f"| {text} | {value} | {'yes' if ok else '**no**'} |")

    for group, name in (("w1_one_submitter", "1"), ("w2_four_submitters", "2")):
        ex, tp = per_job(results, group, "harbor_execute"), per_job(results, group, "threadpool")
        if ex and tp:
            row(
                f"untracked execute at least as fast as threadpool, workload {name}",
                f"{ex:,.0f} vs {tp:,.0f} ns per job: {tp / ex:.2f}x threadpool's throughput",
                ex <= tp,
            )
    ex, tp = per_job(results, "w3_panic_heavy", "harbor_execute"), per_job(
        results, "w3_panic_heavy", "threadpool"
    )
    if ex and tp:
        row(
            "panic-heavy at least 10x threadpool's throughput (execute)",
            f"{ex:,.0f} vs {tp:,.0f} ns per job: {tp / ex:.1f}x",
            tp / ex >= 10,
        )
    sub = per_job(results, "w3_panic_heavy", "harbor_submit")
    if sub and tp:
        lines.append(
            f"| (the same with tracked submit, for reference) "
            f"| {sub:,.0f} vs {tp:,.0f} ns per job: {tp / sub:.1f}x | - |"
        )
    ex, sub = per_job(results, "w1_one_submitter", "harbor_execute"), per_job(
        results, "w1_one_submitter", "harbor_submit"
    )
    if ex and sub:
        row(
            "tracked submit at most 3x untracked execute per job, workload 1",
            f"{sub:,.0f} vs {ex:,.0f} ns per job: {sub / ex:.2f}x",
            sub <= 3 * ex,
        )
    ex, full = per_job(results, "w5_tracking", "harbor_execute"), per_job(
        results, "w5_tracking", "harbor_submit_status_join"
    )
    if ex and full:
        lines.append(
            f"| (workload 5: submit + status + join vs execute, for reference) "
            f"| {full:,.0f} vs {ex:,.0f} ns per job: {full / ex:.2f}x | - |"
        )
    aw, sb = per_job(results, "async_round_trip", "harbor_submit_await"), per_job(
        results, "async_round_trip", "tokio_spawn_blocking"
    )
    if aw and sb:
        row(
            "async round trip at least 10x faster per job than spawn_blocking",
            f"{aw:,.0f} vs {sb:,.0f} ns per job: {sb / aw:.1f}x",
            sb / aw >= 10,
        )
    return "\n".join(lines)


def ratio_row(lines, text, num, den, limit, unit="ns per job"):
    if num is None or den is None:
        return
    ok = num / den <= limit
    lines.append(
        f"| {text} | {num:,.0f} vs {den:,.0f} {unit}: {num / den:.2f}x | "
        f"{'yes' if ok else '**no**'} |"
    )


def targets_issue11(results):
    """Issue 11's targets, checked against the medians."""
    lines = ["| target (issue 11) | measured (medians) | met |", "|---|---|---|"]
    for group, name in (("i11_untracked_1", "one submitter"), ("i11_untracked_4", "four submitters")):
        ex = per_job(results, group, "harbor_execute")
        ratio_row(lines, f"1. execute at most 0.9x threadpool, {name}", ex,
                  per_job(results, group, "threadpool"), 0.9)
        ratio_row(lines, f"1. execute within 10% of the floor, {name}", ex,
                  per_job(results, group, "floor"), 1.1)
        off = per_job(results, group, "harbor_execute_metrics_off")
        if off is not None:
            ratio_row(lines, f"1. (histograms off) within 10% of the floor, {name}", off,
                      per_job(results, group, "floor"), 1.1)
            ratio_row(lines, f"1. (histograms off) at most 0.9x threadpool, {name}", off,
                      per_job(results, group, "threadpool"), 0.9)
    ex = per_job(results, "i11_tracked", "harbor_execute")
    ratio_row(lines, "2. tracked submit + join at most 2x execute", per_job(
        results, "i11_tracked", "harbor_submit_join"), ex, 2.0)
    ratio_row(lines, "2. the same, every record retained", per_job(
        results, "i11_tracked", "harbor_submit_join_retained"), ex, 2.0)
    g = "i11_many_workers"
    for kind in ("execute", "submit"):
        ratio_row(lines, f"4. {kind}: 64 workers at most 1.2x 2 workers (16 submitters)",
                  per_job(results, g, f"{kind}_64w"), per_job(results, g, f"{kind}_2w"), 1.2)
        ratio_row(lines, f"4. {kind}, 64 workers: a joiner during the run (no O(workers) cost)",
                  per_job(results, g, f"{kind}_64w_joiner"), per_job(results, g, f"{kind}_64w"), 1.2)
    g = "i11_features"
    ratio_row(lines, "5. execute, histograms on vs off (issue 8: at most 1.1x)",
              per_job(results, g, "execute_metrics_on"), per_job(results, g, "execute_metrics_off"), 1.1)
    ratio_row(lines, "5. submit + join, histograms on vs off (issue 8: at most 1.1x)",
              per_job(results, g, "submit_join_metrics_on"), per_job(results, g, "submit_join_metrics_off"), 1.1)
    ratio_row(lines, "5. submit + join, progress reported vs not (issue 8: at most 1.1x)",
              per_job(results, g, "submit_join_progress"), per_job(results, g, "submit_join_metrics_on"), 1.1)
    return "\n".join(lines)


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(results, runs, title="harbor-pool against its peers: median time per job (lower is better)"):
    groups = [w for w in WORKLOADS if any((w[0], p[0]) in results for p in POOLS)]
    width, height = 960, 580
    left, right, top, bottom = 90, 20, 92, 150
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [m / j for (m, j, _) in results.values()]
    # The axis starts just below the fastest bar, so that the bars a reader
    # compares (harbor, threadpool, rayon) differ visibly in height.
    lo = nice_below(min(values) * 0.6)
    hi = 10 ** math.ceil(math.log10(max(values) * 1.5))

    def y(ns):
        frac = (math.log10(ns) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return top + plot_h * (1 - frac)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="28" font-size="19" font-weight="bold" text-anchor="middle">'
        f"{esc(title)}</text>",
        f'<text x="{width / 2}" y="50" font-size="12.5" fill="#444" text-anchor="middle">'
        f"criterion medians{f' (median of {runs} runs)' if runs > 1 else ''}; "
        "pools sized to the machine's cores; log scale</text>",
    ]
    notes = []
    if any((group, "naive") in results for group, _, _ in groups):
        notes.append("the naive pool runs 2,000 jobs per iteration instead of 100,000")
    if any(group == "async_round_trip" for group, _, _ in groups):
        notes.append("the async round trip runs inside a tokio multi-thread runtime")
    note = "; ".join(notes + ["every bar is time per job"])
    out.append(
        f'<text x="{width / 2}" y="68" font-size="12.5" fill="#444" text-anchor="middle">'
        f"{note}</text>"
    )
    # Grid lines and y-axis labels at every power of ten, faint ones at 2x and 5x.
    exponent = math.floor(math.log10(lo))
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
                    f'fill="{"#222" if major else "#777"}" text-anchor="end">{fmt_axis(value)}</text>'
                )
        exponent += 1
    out.append(
        f'<text transform="translate(22 {top + plot_h / 2}) rotate(-90)" font-size="13" '
        'text-anchor="middle">time per job (median, log scale)</text>'
    )
    # Bars.
    group_w = plot_w / len(groups)
    most = max(len([p for p in POOLS if (g[0], p[0]) in results]) for g in groups)
    bar_w = min(34, group_w * 0.9 / max(5, most))
    for gi, (group, title, subtitle) in enumerate(groups):
        present = [p for p in POOLS if (group, p[0]) in results]
        start = left + gi * group_w + (group_w - bar_w * len(present)) / 2
        for bi, (pool, label, color) in enumerate(present):
            median, jobs, _ = results[(group, pool)]
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
    # Legend, rows of three under the axis title.
    shown = [p for p in POOLS if any((g[0], p[0]) in results for g in groups)]
    per_row = 3
    height += 24 * max(0, (len(shown) + per_row - 1) // per_row - 2)
    out[0] = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">'
    )
    out[1] = f'<rect width="{width}" height="{height}" fill="white"/>'
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
    parser.add_argument(
        "--criterion",
        action="append",
        help="a criterion output directory; repeat for several runs "
        "(default: target/criterion)",
    )
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--issue11",
        action="store_true",
        help="benches/floor.rs (issue 11): its groups, its targets, "
        "docs/benchmarks-issue11.svg",
    )
    args = parser.parse_args()
    dirs = args.criterion or ["target/criterion"]
    results = load(dirs)
    if not results:
        sys.exit(f"no criterion results under {', '.join(dirs)}; run `cargo bench` first")
    if args.issue11:
        global WORKLOADS, POOLS
        WORKLOADS, POOLS = I11_WORKLOADS, I11_POOLS
        out = args.out or "docs/benchmarks-issue11.svg"
        title = "harbor-pool at the floor of its design (issue 11): median time per job"
    else:
        out = args.out or "docs/benchmarks.svg"
        title = "harbor-pool against its peers: median time per job (lower is better)"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(chart(results, len(dirs), title))
    print(table(results))
    print()
    print(targets_issue11(results) if args.issue11 else targets(results))
    args.out = out
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
