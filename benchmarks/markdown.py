"""RESULTS.md: machine facts, the targets met or not, and one table per measurement."""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks import soak
from benchmarks.apps import SHAPE_TITLES
from benchmarks.report import Results, _f, _spread, _table
from benchmarks.settings import MODES
from benchmarks.soak import SoakRow
from benchmarks.variants import TITLES

SOAK_PROFILED_TARGET = 200_000
# How results/soak_before_fix.csv was made: the same soak, children running the pyinstrument
# engine of the commit before the fix (22c9dc6).
BEFORE_FIX_COMMANDS = (
    "git show 9267fd5:wsgiprof/engines/pyinstrument.py > engine_before_fix.py",
    "python -m benchmarks.soak --full --engines pyinstrument --engine-source engine_before_fix.py "
    '--label "before the fix (9267fd5)" --csv benchmarks/results/soak_before_fix.csv',
)


def _inproc_metric(results: Results, shape: str, variant: str) -> float:
    """The in-process ratio a target is judged on: CPU for CPU-bound shapes, wall for sleep."""
    for row in results.inprocess:
        if row.shape == shape and row.variant == variant and row.available:
            return (row.ratio if shape == "sleep" else row.cpu_ratio).median
    return math.nan


def _e2e(results: Results, shape: str, variant: str, *, rps: bool = False) -> float:
    """End-to-end ratio to bare: capacity (inverse server CPU per request), or requests/s."""
    for row in results.endtoend:
        if row.shape == shape and row.variant == variant:
            return (row.rps_ratio if rps else row.capacity_ratio).median
    return math.nan


def _flag(mode: str) -> str:
    return "" if mode == "quick" else f" --{mode}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def targets(results: Results) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    shapes = list(dict.fromkeys(r.shape for r in results.inprocess))
    ratios = {s: _inproc_metric(results, s, "disabled") for s in shapes}
    e2e_shapes = list(dict.fromkeys(r.shape for r in results.endtoend))
    e2e_dis = {s: _e2e(results, s, "disabled") for s in e2e_shapes}
    detail = ", ".join(f"{s} x{v:.3f}" for s, v in ratios.items())
    if e2e_dis:
        detail += "; end to end capacity " + ", ".join(f"{s} x{v:.3f}" for s, v in e2e_dis.items())
    ok = all(v <= 1.01 for v in ratios.values()) if ratios else None
    out.append(("Disabled within 1% of bare (in-process)", detail, ok))
    loss1 = {s: 1 - _e2e(results, s, "rate1") for s in e2e_shapes}
    rps1 = {s: 1 - _e2e(results, s, "rate1", rps=True) for s in e2e_shapes}
    out.append(
        (
            "Sample rate 1%: under 3% throughput loss end to end",
            ", ".join(
                f"{s} capacity loss {v:+.1%} (req/s loss {rps1[s]:+.1%})" for s, v in loss1.items()
            )
            or "end to end not run",
            all(v < 0.03 for v in loss1.values()) if loss1 else None,
        )
    )
    loss5 = 1 - _e2e(results, "calls", "rate5")
    rps5 = 1 - _e2e(results, "calls", "rate5", rps=True)
    fixed5 = next((r for r in results.budget if r.driver.startswith("no budget")), None)
    detail5 = (
        f"end to end capacity loss {loss5:+.1%} (req/s loss {rps5:+.1%})"
        if not math.isnan(loss5)
        else "end to end not run"
    )
    if fixed5 is not None:
        detail5 += f"; in-process CPU +{fixed5.achieved.median:.1%}"
    out.append(
        (
            "Sample rate 5%: under 10% on the call-heavy shape",
            detail5,
            None if math.isnan(loss5) else loss5 < 0.10,
        )
    )
    parts = []
    oks = []
    for s in shapes:
        ours, theirs = _inproc_metric(results, s, "rate100"), _inproc_metric(results, s, "werkzeug")
        parts.append(f"{s}: x{ours:.2f} vs werkzeug x{theirs:.2f}")
        oks.append(ours <= theirs)
    for s in e2e_shapes:
        ours, theirs = _e2e(results, s, "rate100"), _e2e(results, s, "werkzeug")
        parts.append(f"{s} end to end capacity x{ours:.2f} vs x{theirs:.2f}")
    out.append(
        (
            "100% pyinstrument no slower than werkzeug's ProfilerMiddleware on any shape",
            "; ".join(parts),
            all(oks) if oks else None,
        )
    )
    acc = [
        r
        for r in results.accuracy
        if r.profiler.startswith("wsgiprof (pyinstrument)") and r.rate == 0.1
    ]
    if acc:
        worst = max(acc, key=lambda r: abs(r.error_pts))
        worst_p = max(acc, key=lambda r: abs(r.error_vs_profiled_pts))
        detail = (
            f"{acc[0].requests} requests, {acc[0].sampled} sampled; worst {worst.function} "
            f"{worst.error_pts:+.1f} pts vs the app's real split "
            f"({worst_p.function} {worst_p.error_vs_profiled_pts:+.1f} pts vs the split of the "
            "profiled requests themselves)"
        )
        ok_acc: bool | None = all(abs(r.error_pts) <= 5 for r in acc)
        if acc[0].requests < 2000:
            ok_acc = None
            detail += " (fewer than 2,000 requests: not judged)"
        out.append(("Accuracy within ±5 points at 10% after 2,000 requests", detail, ok_acc))
    d = results.datapath
    if d is not None:
        big = d.stacks >= 1_000_000
        out.append(
            (
                "Summary under 200 ms for 1,000,000 stacks",
                f"{d.summary_ms:.0f} ms ({d.stacks:,} stacks, {d.distinct_stacks:,} distinct)",
                d.summary_ms < 200 if big else None,
            )
        )
        out.append(
            (
                "Peak RSS under 200 MB for 1,000,000 stacks",
                f"{d.peak_rss_summary_mb:.0f} MB after ingest and summary "
                f"(whole child process incl. the synthetic stack pool); "
                f"{d.peak_rss_mb:.0f} MB after exports and a memory-store round trip",
                d.peak_rss_summary_mb < 200 if big else None,
            )
        )
    if results.soak:
        out.append(_soak_target(results.soak))
    return out


def _soak_totals(rows: Sequence[SoakRow]) -> list[tuple[str, int, int, int, int]]:
    """Per engine: name, requests, profiled, crashes, hangs."""
    totals = []
    for engine in dict.fromkeys(r.engine for r in rows):
        mine = [r for r in rows if r.engine == engine]
        totals.append(
            (
                engine,
                sum(r.requests for r in mine),
                sum(r.profiled for r in mine),
                sum(r.crashes for r in mine),
                sum(r.hangs for r in mine),
            )
        )
    return totals


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _soak_totals_text(rows: Sequence[SoakRow]) -> str:
    return "; ".join(
        f"{engine}: {_count(crashes, 'crash', 'crashes')}, {_count(hangs, 'hang', 'hangs')} in "
        f"{requests:,} requests ({profiled:,} profiled)"
        for engine, requests, profiled, crashes, hangs in _soak_totals(rows)
    )


def _soak_target(rows: Sequence[SoakRow]) -> tuple[str, str, bool | None]:
    """No crash in the soak, judged once every engine had enough profiled requests."""
    totals = _soak_totals(rows)
    crashed = any(crashes or hangs for *_, crashes, hangs in totals)
    enough = all(profiled >= SOAK_PROFILED_TARGET for _, _, profiled, _, _ in totals)
    ok = False if crashed else (True if enough else None)
    detail = _soak_totals_text(rows)
    if ok is None:
        detail += f" (fewer than {SOAK_PROFILED_TARGET:,} profiled per engine: not judged)"
    return (
        f"Crash soak: no crash or hang in {SOAK_PROFILED_TARGET:,} profiled requests per engine",
        detail,
        ok,
    )


def _soak_table(rows: Sequence[SoakRow], *, first_failure: bool = False) -> list[str]:
    header = [
        "engine",
        "rate",
        "transport",
        "requests",
        "profiled",
        "crashes (signals)",
        "hangs",
        "children",
        "req/s",
        "RSS start → end (MB)",
        "finalizers / request",
        "GC passes / request",
        "client errors",
    ]
    if first_failure:
        header.append("first crash or hang after (requests)")
    header.append("note")
    table = []
    for r in rows:
        per = max(r.requests, 1)
        line = [
            r.engine,
            f"{r.rate:g}",
            r.transport,
            f"{r.requests:,}",
            f"{r.profiled:,}",
            f"{r.crashes} ({r.signals})" if r.signals else str(r.crashes),
            str(r.hangs),
            str(r.children),
            _f(r.rps, 0),
            f"{_f(r.rss_start_mb, 1)} → {_f(r.rss_end_mb, 1)}",
            f"{r.finalizers / per:.1f}",
            f"{r.collections / per:.2f}",
            str(r.errors),
        ]
        if first_failure:
            line.append("" if r.first_failure_after is None else f"{r.first_failure_after:,}")
        line.append(r.note.replace("|", "/"))
        table.append(line)
    return _table(header, table)


def soak_section(results: Results) -> list[str]:
    """Section 6: the crash soak of this checkout, and the committed run of the engine before
    the fix it would have caught."""
    mode = MODES.get(results.mode)
    lines = ["## 6. Crash soak", ""]
    lines += [
        "Why: the pyinstrument engine once segfaulted apps on CPython 3.11 (fixed in 22c9dc6) "
        "when the first sample of a request fell in a finalizer run by a garbage-collection pass "
        "inside the profile hook. Each scenario (engine x sample rate x transport) runs in a child "
        "process of its own; a crash is the child's exit by a signal, a hang a child the parent "
        f"killed because it served no request for {soak.HANG_S:.0f} s (or did not start or stop "
        "in time); after either a fresh child takes over, so every one is counted. Transports: "
        "`inprocess` = the WSGI callable "
        "called in a loop by the child; `threaded` = werkzeug's threaded server in the child on "
        f"127.0.0.1, {soak.CLIENT_THREADS} client connections at once from the parent (werkzeug "
        "closes every connection, so each request has its own server thread, up to "
        f"{soak.CLIENT_THREADS} at a time). The app's routes (`"
        + "`, `".join(soak.ROUTES)
        + "`) make garbage as real apps do: objects in reference cycles whose `__del__` runs "
        "Python code, generators dropped mid-iteration (half of them inside cycles), "
        "`weakref.finalize` and weakref callbacks on objects in cycles; plus small calls and a "
        "JSON encoding. The children lower the collector's thresholds to "
        f"`gc.set_threshold{soak.GC_THRESHOLD}` (default (700, 10, 10)) so that collections, and "
        "the finalizers they run, are frequent. RSS (psutil) is the first child's when its load "
        "starts and the last child's when its load ends; req/s counts the load time of every "
        "child. At rate 0.05 the yappi engine traces in 2 s windows every 40 s.",
        "",
    ]
    if mode is not None:
        lines += [
            f"Run by `python -m benchmarks{_flag(results.mode)} --only soak` ({results.mode} "
            f"mode): each scenario until {mode.soak_requests:,} requests were served (at rate "
            f"1.0: profiled), for at least {mode.soak_min_seconds:.0f} s and at most "
            f"{mode.soak_seconds:.0f} s; raw data `results/soak.csv`. Started "
            f"{results.machine.get('date', '?')}, load average "
            f"{results.machine.get('load average at start', '?')} (a shared machine: req/s "
            "varies with the neighbours).",
            "",
        ]
    lines += _soak_table(results.soak)
    lines += [f"Totals: {_soak_totals_text(results.soak)}.", ""]
    before = results.soak_before_fix
    if before:
        lines += ["### Before the fix", ""]
        lines += [
            f"The same soak with the children running the pyinstrument engine of 9267fd5, the "
            f"commit before the fix (label `{before[0].label}`); raw data "
            "`results/soak_before_fix.csv`, made by:",
            "",
            "```",
            *BEFORE_FIX_COMMANDS,
            "```",
            "",
        ]
        lines += _soak_table(before, first_failure=True)
        lines += [f"Totals: {_soak_totals_text(before)}.", ""]
    return lines


def render(results: Results, csvs: Sequence[str]) -> str:
    lines = [
        "# wsgiprof benchmarks",
        "",
        f"Generated by `python -m benchmarks{_flag(results.mode)}`"
        f" ({results.mode} mode) in {results.seconds:.0f} s. Raw data: "
        + ", ".join(f"`{c}`" for c in csvs)
        + "; chart: `results/overhead.png`.",
        "",
        "![overhead](results/overhead.png)",
        "",
        "## Machine",
        "",
    ]
    lines += _table(["", ""], [[k, v] for k, v in results.machine.items()])
    lines += [
        "The machine is shared and noisy. Every comparison is interleaved (variants take turns "
        "round by round) and reported as median [first-third quartile] of round-by-round ratios "
        "to the bare app measured in the same rounds. In-process, CPU-bound shapes are judged on "
        "thread CPU time (it resists other processes stealing the core); the sleep shape on wall "
        "time.",
        "",
        "## Targets",
        "",
    ]
    judged = results.mode != "smoke"
    if not judged:
        lines += ["Smoke mode: far too short to judge any target.", ""]
    lines += _table(
        ["target", "measured", "verdict"],
        [[t, d, _verdict(ok if judged else None)] for t, d, ok in targets(results)],
    )
    lines += ["## 1. Cost per request, in-process", ""]
    lines += [
        "The WSGI callable called directly with a prebuilt environ, body consumed and closed. "
        "Shapes: " + "; ".join(f"`{k}` = {v}" for k, v in SHAPE_TITLES.items()) + ".",
        "",
    ]
    rows = []
    for r in results.inprocess:
        if not r.available:
            rows.append([r.shape, TITLES[r.variant], r.note, "", "", ""])
            continue
        rows.append(
            [
                r.shape,
                TITLES[r.variant],
                _spread(r.cpu_per_request_us, 0),
                _spread(r.cpu_ratio),
                _spread(r.per_request_us, 0),
                _spread(r.ratio),
            ]
        )
    lines += _table(
        [
            "shape",
            "variant",
            "CPU µs/request",
            "CPU ratio to bare",
            "wall µs/request",
            "wall ratio to bare",
        ],
        rows,
    )
    lines += ["## 2. Throughput and p99 end to end", ""]
    if results.endtoend_note:
        lines += [f"Not run: {results.endtoend_note}.", ""]
    else:
        lines += [
            "gunicorn, 2 workers x 4 gthread threads per variant, all variants up at once; wrk "
            "(1 thread, 8 connections) against one at a time, interleaved. Server CPU per request "
            "= CPU of the gunicorn master and workers during the run / requests served; capacity "
            "ratio = bare CPU per request / variant CPU per request (what a saturated CPU-bound "
            "server can serve relative to bare). Requests/s on this shared 2-core machine also "
            "measures what the neighbours and wrk itself left over, so the targets are judged "
            "on capacity; requests/s and p99 are shown as measured.",
            "",
        ]
        lines += _table(
            [
                "shape",
                "variant",
                "server CPU µs/request",
                "capacity ratio",
                "req/s",
                "req/s ratio",
                "p99 ms",
                "p99 ratio",
                "errors",
            ],
            [
                [
                    r.shape,
                    TITLES[r.variant],
                    _spread(r.cpu_us_per_request, 0),
                    _spread(r.capacity_ratio),
                    _spread(r.rps, 0),
                    _spread(r.rps_ratio),
                    _spread(r.p99_ms, 2),
                    _spread(r.p99_ratio),
                    str(r.errors),
                ]
                for r in results.endtoend
            ],
        )
    lines += ["## 3. Accuracy", ""]
    lines += [
        "Truth = each function's CPU measured by the app with `time.thread_time()`, as a share "
        "of the four functions' CPU. 'vs real' compares with all requests (the split without a "
        "profiler, what a user wants to know); 'vs profiled' with the requests wsgiprof "
        "profiled (the split as the profiler's own hook distorted it, so this isolates the "
        "attribution error from the observer effect). py-spy records the same run out of "
        "process, 1000 Hz, idle samples dropped (its default).",
        "",
    ]
    lines += _table(
        [
            "profiler",
            "rate",
            "requests",
            "sampled",
            "function",
            "truth %",
            "measured %",
            "error vs real (pts)",
            "error vs profiled (pts)",
            "note",
        ],
        [
            [
                r.profiler,
                f"{r.rate:.0%}",
                str(r.requests),
                str(r.sampled),
                r.function,
                _f(r.truth_pct, 1),
                _f(r.measured_pct, 1),
                _f(r.error_pts, 1),
                _f(r.error_vs_profiled_pts, 1),
                r.note,
            ]
            for r in results.accuracy
        ],
    )
    d = results.datapath
    lines += ["## 4. Data path scale", ""]
    if d is not None:
        lines += [
            f"{d.stacks:,} stacks in {d.requests:,} profiled requests (10 stacks each) over "
            f"{d.endpoints} endpoints, drawn from {d.distinct_stacks:,} distinct stacks "
            f"(mean depth {d.mean_depth:.1f}). Measured in a child process.",
            "",
        ]
        lines += _table(
            ["metric", "value"],
            [
                [
                    "ingest (Aggregator.add)",
                    f"{d.ingest_s:.2f} s ({d.ingest_us_per_request:.1f} µs per request)",
                ],
                ["build_summary", f"{d.summary_ms:.0f} ms"],
                [
                    "memory store flush + read",
                    "not run (full mode only)"
                    if math.isnan(d.store_roundtrip_ms)
                    else f"{d.store_roundtrip_ms:.0f} ms",
                ],
                [
                    "RSS at start / after building the stack pool",
                    f"{d.rss_start_mb:.0f} MB / {d.rss_pool_mb:.0f} MB",
                ],
                [
                    "peak RSS after ingest / after summary",
                    f"{d.peak_rss_ingest_mb:.0f} MB / {d.peak_rss_summary_mb:.0f} MB",
                ],
                ["peak RSS at the end (exports, store copy)", f"{d.peak_rss_mb:.0f} MB"],
            ],
        )
        export_rows = []
        for fmt, v in d.exports.items():
            export_rows.append(
                [
                    fmt,
                    f"{v['one_endpoint_ms']:.0f} ms",
                    f"{v['one_endpoint_kb']:.0f} KB",
                    f"{v['all_endpoints_ms']:.0f} ms" if "all_endpoints_ms" in v else "not run",
                    f"{v['all_endpoints_mb']:.1f} MB" if "all_endpoints_mb" in v else "",
                ]
            )
        lines += _table(
            ["format", "largest endpoint: time", "size", "all endpoints: time", "size"],
            export_rows,
        )
    lines += ["## 5. Overhead budget (call-heavy shape, in-process)", ""]
    lines += [
        "Achieved overhead = thread CPU of a batch with the budget / bare - 1, interleaved; "
        "'estimated' is the budget's own C/T over its window at the end.",
        "",
    ]
    lines += _table(
        [
            "budget",
            "configured rate",
            "applied by",
            "achieved overhead",
            "estimated by budget",
            "effective rate at end",
        ],
        [
            [
                _f(r.max_overhead, 2),
                f"{r.base_rate:g}",
                r.driver,
                _spread(r.achieved),
                _f(r.estimated),
                f"{r.effective_rate:.4f}",
            ]
            for r in results.budget
        ],
    )
    if results.soak:
        lines += soak_section(results)
    return "\n".join(lines)
