"""Writes RESULTS.md, the CSV files and the chart from the measurements of one run."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.accuracy import AccuracyRow
from benchmarks.apps import SHAPE_TITLES
from benchmarks.budget import BudgetRow
from benchmarks.datapath import DatapathResult
from benchmarks.endtoend import EndToEndRow
from benchmarks.inprocess import InprocessRow
from benchmarks.soak import COLUMNS as SOAK_COLUMNS
from benchmarks.soak import SoakRow, csv_row
from benchmarks.timing import Spread
from benchmarks.variants import TITLES


@dataclass
class Results:
    mode: str
    machine: dict[str, str]
    inprocess: list[InprocessRow] = field(default_factory=list)
    endtoend: list[EndToEndRow] = field(default_factory=list)
    endtoend_note: str = ""
    accuracy: list[AccuracyRow] = field(default_factory=list)
    datapath: DatapathResult | None = None
    budget: list[BudgetRow] = field(default_factory=list)
    soak: list[SoakRow] = field(default_factory=list)
    soak_before_fix: list[SoakRow] = field(default_factory=list)
    seconds: float = 0.0


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _spread(spread: Spread, digits: int = 3) -> str:
    if spread.n == 0:
        return "n/a"
    if spread.n == 1:
        return _f(spread.median, digits)
    return f"{_f(spread.median, digits)} [{_f(spread.q1, digits)}-{_f(spread.q3, digits)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def write_csvs(results: Results, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        path = folder / name
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)

    def s(spread: Spread) -> list[float]:
        return [spread.median, spread.q1, spread.q3]

    write(
        "inprocess.csv",
        [
            "shape",
            "variant",
            "available",
            "note",
            "requests_per_batch",
            "rounds",
            "wall_us_median",
            "wall_us_q1",
            "wall_us_q3",
            "ratio_median",
            "ratio_q1",
            "ratio_q3",
            "cpu_us_median",
            "cpu_us_q1",
            "cpu_us_q3",
            "cpu_ratio_median",
            "cpu_ratio_q1",
            "cpu_ratio_q3",
        ],
        [
            [
                r.shape,
                r.variant,
                r.available,
                r.note,
                r.requests_per_batch,
                r.ratio.n,
                *s(r.per_request_us),
                *s(r.ratio),
                *s(r.cpu_per_request_us),
                *s(r.cpu_ratio),
            ]
            for r in results.inprocess
        ],
    )
    write(
        "endtoend.csv",
        [
            "shape",
            "variant",
            "reps",
            "rps_median",
            "rps_q1",
            "rps_q3",
            "p99_ms_median",
            "p99_ms_q1",
            "p99_ms_q3",
            "rps_ratio_median",
            "rps_ratio_q1",
            "rps_ratio_q3",
            "p99_ratio_median",
            "p99_ratio_q1",
            "p99_ratio_q3",
            "server_cpu_us_per_request_median",
            "server_cpu_us_per_request_q1",
            "server_cpu_us_per_request_q3",
            "capacity_ratio_median",
            "capacity_ratio_q1",
            "capacity_ratio_q3",
            "errors",
        ],
        [
            [
                r.shape,
                r.variant,
                r.rps.n,
                *s(r.rps),
                *s(r.p99_ms),
                *s(r.rps_ratio),
                *s(r.p99_ratio),
                *s(r.cpu_us_per_request),
                *s(r.capacity_ratio),
                r.errors,
            ]
            for r in results.endtoend
        ],
    )
    write(
        "accuracy.csv",
        [
            "profiler",
            "rate",
            "requests",
            "sampled",
            "function",
            "truth_pct",
            "measured_pct",
            "error_pts",
            "truth_profiled_pct",
            "error_vs_profiled_pts",
            "note",
        ],
        [
            [
                r.profiler,
                r.rate,
                r.requests,
                r.sampled,
                r.function,
                r.truth_pct,
                r.measured_pct,
                r.error_pts,
                r.truth_profiled_pct,
                r.error_vs_profiled_pts,
                r.note,
            ]
            for r in results.accuracy
        ],
    )
    if results.datapath is not None:
        d = results.datapath
        rows: list[list[object]] = [
            [key, value] for key, value in d.__dict__.items() if key != "exports"
        ]
        for fmt, values in d.exports.items():
            rows += [[f"export {fmt} {key}", value] for key, value in values.items()]
        write("datapath.csv", ["metric", "value"], rows)
    write(
        "budget.csv",
        [
            "max_overhead",
            "base_rate",
            "driver",
            "achieved_median",
            "achieved_q1",
            "achieved_q3",
            "estimated_by_budget",
            "effective_rate",
        ],
        [
            [r.max_overhead, r.base_rate, r.driver, *s(r.achieved), r.estimated, r.effective_rate]
            for r in results.budget
        ],
    )
    write("soak.csv", SOAK_COLUMNS, [csv_row(r) for r in results.soak])
    return written


def chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    colors = {variant: f"C{i % 10}" for i, variant in enumerate(TITLES)}

    shapes = list(dict.fromkeys(r.shape for r in results.inprocess))
    variants = [v for v in dict.fromkeys(r.variant for r in results.inprocess) if v != "bare"]
    panels = 2 if results.endtoend else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.8), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        values = []
        for shape in shapes:
            row = next(r for r in results.inprocess if r.shape == shape and r.variant == variant)
            use = row.ratio if shape == "sleep" else row.cpu_ratio
            values.append(use.median if row.available else 0.0)
        positions = [x + (i - len(variants) / 2 + 0.5) * width for x in range(len(shapes))]
        ax.bar(
            positions,
            values,
            width,
            color=colors[variant],
            label=TITLES[variant].replace(" (pyinstrument)", ""),
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xticks(range(len(shapes)))
    ax.set_xticklabels([SHAPE_TITLES[s] for s in shapes], fontsize=8)
    ax.set_ylabel("time per request / bare (log)")
    ax.set_title("In-process cost per request (CPU; wall for sleep)")
    ax.legend(fontsize=7)
    if results.endtoend:
        ax2 = axes[0][1]
        e_shapes = list(dict.fromkeys(r.shape for r in results.endtoend))
        e_variants = [v for v in dict.fromkeys(r.variant for r in results.endtoend) if v != "bare"]
        width = 0.8 / max(len(e_variants), 1)
        for i, variant in enumerate(e_variants):
            values = [
                next(
                    r for r in results.endtoend if r.shape == s and r.variant == variant
                ).capacity_ratio.median
                for s in e_shapes
            ]
            positions = [x + (i - len(e_variants) / 2 + 0.5) * width for x in range(len(e_shapes))]
            ax2.bar(
                positions,
                values,
                width,
                color=colors[variant],
                label=TITLES[variant].replace(" (pyinstrument)", ""),
            )
        ax2.axhline(1.0, color="black", linewidth=0.8)
        ax2.set_xticks(range(len(e_shapes)))
        ax2.set_xticklabels([SHAPE_TITLES[s] for s in e_shapes], fontsize=8)
        ax2.set_ylabel("capacity / bare (server CPU per request, inverse)")
        ax2.set_ylim(0, 1.2)
        ax2.set_title("End to end capacity (gunicorn + wrk)")
        ax2.legend(fontsize=7)
    fig.suptitle(f"wsgiprof overhead ({results.machine.get('date', '')}, {results.mode} mode)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
