"""The summary of a store's window as plain JSON-ready data, the body of ``GET /api/summary``.

Pure: a :class:`~wsgiprof.stores.base.Snapshot` in, a dict of strings, numbers, lists and None
out. The dashboard serves it, the CLI prints it, and both rank endpoints the same way.

Example::

    summary = build_summary(store.read(), engine="pyinstrument", sample_rate=0.05)
    for endpoint in summary["endpoints"]:
        print(endpoint["cpu_share"], endpoint["name"])
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, itemgetter
from typing import Any

from wsgiprof.engines import engine_reason
from wsgiprof.engines.base import window_summary
from wsgiprof.model import (
    SYNTHETIC_FILE,
    EndpointProfile,
    Frame,
    FunctionStats,
    FunctionTotals,
    Stack,
    Weight,
    exact_function_stats,
    function_stats,
    short_path,
)
from wsgiprof.stores.base import ProcessInfo, Snapshot

SECONDS_DIGITS = 6
"""Seconds are rounded to the microsecond, which is finer than any profiler's resolution."""

MS_DIGITS = 3
SHARE_DIGITS = 6
PERCENT_DIGITS = 2


VERDICT_CPU_BOUND = 0.7
"""CPU/wall ratio from which an endpoint counts as CPU-bound."""
VERDICT_WAITING = 0.3
"""CPU/wall ratio below which an endpoint counts as waiting (I/O, locks, upstream services)."""


def verdict(cpu_wall_ratio: float | None) -> str | None:
    """``cpu-bound`` (ratio >= 0.7), ``waiting`` (< 0.3), ``mixed`` in between, None if unknown."""
    if cpu_wall_ratio is None:
        return None
    if cpu_wall_ratio >= VERDICT_CPU_BOUND:
        return "cpu-bound"
    if cpu_wall_ratio < VERDICT_WAITING:
        return "waiting"
    return "mixed"


def build_summary(
    snapshot: Snapshot,
    *,
    engine: str,
    sample_rate: float,
    top: int = 10,
    host: dict[str, Any] | None = None,
    function_totals: bool = True,
    cache: SummaryCache | None = None,
) -> dict[str, Any]:
    """The summary of ``snapshot``: endpoints ranked by CPU, their hottest functions, processes.

    ``top`` limits ``top_functions`` per endpoint (largest self CPU first). Floats are rounded so
    the JSON stays compact; values that cannot be computed (a mean without sampled requests, a
    ratio without wall time) are None, never NaN. ``host`` (a
    :func:`wsgiprof.resources.host_reading`) is passed through as the ``host`` field.
    ``function_totals=False`` skips the total CPU of the top functions (``None`` then), the one
    part whose cost grows with the depth of the stacks; an overview that shows self time only
    does not need it. ``cache`` reuses the per-endpoint work of an earlier call for endpoints
    that did not change since (see :class:`SummaryCache`).
    """
    profiles = list(snapshot.endpoints.values())
    total_cpu = sum(profile.cpu for profile in profiles)
    ranked = sorted(profiles, key=lambda p: (-p.cpu, p.name))
    top = max(top, 0)
    entries = []
    for profile in ranked:
        entry = (
            cache.endpoint(profile, top, function_totals)
            if cache is not None
            else _endpoint(profile, top, function_totals)
        )
        share = profile.cpu / total_cpu if total_cpu > 0 else 0.0
        entries.append({**entry, "cpu_share": _round(share, SHARE_DIGITS)})
    if cache is not None:
        cache.keep(profile.name for profile in profiles)
    window_start = _round(snapshot.window_start, SECONDS_DIGITS)
    window_end = _round(snapshot.window_end, SECONDS_DIGITS)
    return {
        "engine": engine,
        "engine_reason": engine_reason(engine),
        "sample_rate": sample_rate,
        "window": {"start": window_start, "end": window_end},
        "endpoints": entries,
        "processes": [
            _process(process)
            for process in sorted(snapshot.processes, key=lambda p: (p.host, p.pid))
        ],
        "host": host,
        "totals": {
            "requests": sum(profile.requests for profile in profiles),
            "sampled": sum(profile.sampled for profile in profiles),
            "cpu_seconds": _round(total_cpu, SECONDS_DIGITS),
            "wall_seconds": _round(sum(profile.wall for profile in profiles), SECONDS_DIGITS),
        },
        "lost_flushes": snapshot.lost_flushes,
        **_windows(snapshot.processes),
    }


_Fingerprint = tuple[int, int, int, float, float, int, int, int, bool, float, int]


class SummaryCache:
    """Remembers the per-endpoint part of a summary, keyed by what identifies an endpoint's data.

    A store hands out a fresh copy of the window on every read, so nothing can be cached by
    object. An endpoint whose counts, time sums and number of stacks are all unchanged has had no
    new sampled request, so its stacks are the same and its entry can be reused. After a load
    run, when people look at the dashboard, that is every endpoint. Thread-safe; entries of
    endpoints absent from the latest summary are dropped, so the cache never outgrows the window.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[_Fingerprint, dict[str, Any]]] = {}
        self.hits = 0
        self.misses = 0

    def endpoint(self, profile: EndpointProfile, top: int, function_totals: bool) -> dict[str, Any]:
        key = (
            profile.requests,
            profile.sampled,
            profile.errors,
            profile.cpu,
            profile.wall,
            len(profile.stacks),
            profile.overflow_samples,
            top,
            function_totals,
            profile.traced_cpu,
            profile.unprofiled_timed,
        )
        with self._lock:
            cached = self._entries.get(profile.name)
        if cached is not None and cached[0] == key:
            self.hits += 1
            return cached[1]
        self.misses += 1
        entry = _endpoint(profile, top, function_totals)
        with self._lock:
            self._entries[profile.name] = (key, entry)
        return entry

    def keep(self, names: Iterable[str]) -> None:
        """Forget every endpoint not in ``names``."""
        wanted = set(names)
        with self._lock:
            for name in [name for name in self._entries if name not in wanted]:
                del self._entries[name]


@dataclass(slots=True)
class _Scan:
    """What one pass over an endpoint's stacks yields, without visiting every frame."""

    self_cpu: dict[Frame, float]
    off_cpu_wall: dict[Frame, float]
    outside_cpu: float


def _scan(stacks: Mapping[Stack, Weight]) -> _Scan:
    """Self CPU per leaf, wall per off-CPU leaf and CPU outside the application, in one pass.

    Only the leaf and the root of each stack are read, so the cost is per stack, not per frame:
    the loops run over C-level maps wherever they can.
    """
    keys = list(stacks)
    weights = list(stacks.values())
    if () in stacks:
        keys, weights = [s for s in keys if s], [w for s, w in stacks.items() if s]
    leaves = list(map(itemgetter(-1), keys))
    self_cpu: dict[Frame, float] = {}
    get = self_cpu.get
    for leaf, cpu in zip(leaves, map(attrgetter("cpu"), weights), strict=True):
        self_cpu[leaf] = get(leaf, 0.0) + cpu
    off_cpu_wall: dict[Frame, float] = {}
    for leaf, weight in compress(
        zip(leaves, weights, strict=True), map(attrgetter("off_cpu"), leaves)
    ):
        off_cpu_wall[leaf] = off_cpu_wall.get(leaf, 0.0) + weight.wall
    roots = map(attrgetter("file"), map(itemgetter(0), keys))
    outside = sum(weight.cpu for weight in compress(weights, map(SYNTHETIC_FILE.__eq__, roots)))
    return _Scan(self_cpu, off_cpu_wall, outside)


def _scan_totals(totals: FunctionTotals) -> _Scan:
    """What :func:`_scan` finds, read from totals kept by the profile (per function, no stack)."""
    return _Scan(totals.self_cpu, totals.off_cpu_wall, totals.outside_cpu)


def _top_functions(
    stacks: Mapping[Stack, Weight],
    scan: _Scan,
    top: int,
    totals: bool,
    kept: FunctionTotals | None = None,
) -> list[FunctionStats]:
    """The ``top`` application functions by self CPU (ties by total CPU), as
    :func:`~wsgiprof.model.function_stats` would rank them.

    Functions with self CPU are necessarily leaves, so the ranking needs only the leaves found by
    the scan; the total CPU is then computed for those few candidates only, or read from
    ``kept``, the totals the profile keeps. When fewer than ``top`` functions have any self CPU,
    functions without self time rank too, and the full per-frame statistics decide.
    """
    if top == 0:
        return []
    candidates: dict[Frame, float] = {}
    cutoff = -math.inf
    for frame, cpu in sorted(scan.self_cpu.items(), key=itemgetter(1), reverse=True):
        if cpu < cutoff:
            break
        if cpu > 0 and frame.file != SYNTHETIC_FILE:
            candidates[frame] = cpu
            if len(candidates) == top:
                cutoff = cpu
    if len(candidates) < top:
        every = kept.stats("cpu") if kept is not None else function_stats(stacks, "cpu")
        return [s for s in every if s.frame.file != SYNTHETIC_FILE][:top]
    total = dict.fromkeys(candidates, 0.0)
    if totals and kept is not None:
        total = {frame: kept.total_cpu[frame] for frame in candidates}
    elif totals:
        wanted = frozenset(candidates)
        for stack, weight in stacks.items():
            if not wanted.isdisjoint(stack):
                for frame in wanted.intersection(stack):
                    total[frame] += weight.cpu
    ranked = [FunctionStats(frame, cpu, total[frame]) for frame, cpu in candidates.items()]
    ranked.sort(key=lambda s: (-s.self_seconds, -s.total_seconds, s.frame))
    return ranked[:top]


def _endpoint(profile: EndpointProfile, top: int, function_totals: bool) -> dict[str, Any]:
    sampled = profile.sampled
    p50 = profile.latency.quantile(0.5)
    p95 = profile.latency.quantile(0.95)
    kept = profile.tracked_totals()
    scan = _scan(profile.stacks) if kept is None else _scan_totals(kept)
    off_cpu = sum(scan.off_cpu_wall.values())
    ratio = profile.cpu / profile.wall if profile.wall > 0 else None
    top_wait = None
    if scan.off_cpu_wall:
        wait_frame, wait_wall = max(
            scan.off_cpu_wall.items(), key=lambda item: (item[1], item[0].function)
        )
        top_wait = {
            "name": wait_frame.function,
            "file": short_path(wait_frame.file),
            "line": wait_frame.line,
            "wall_seconds": _round(wait_wall, SECONDS_DIGITS),
        }
    return {
        "id": profile.id,
        "name": profile.name,
        "requests": profile.requests,
        "sampled": sampled,
        "errors": profile.errors,
        "cpu_seconds": _round(profile.cpu, SECONDS_DIGITS),
        "wall_seconds": _round(profile.wall, SECONDS_DIGITS),
        "mean_cpu_ms": _round(profile.cpu / sampled * 1000 if sampled else None, MS_DIGITS),
        "mean_wall_ms": _round(profile.wall / sampled * 1000 if sampled else None, MS_DIGITS),
        "p50_wall_ms": _round(p50 * 1000 if p50 is not None else None, MS_DIGITS),
        "p95_wall_ms": _round(p95 * 1000 if p95 is not None else None, MS_DIGITS),
        "cpu_wall_ratio": _round(ratio, 4),
        "verdict": verdict(ratio),
        "off_cpu_seconds": _round(off_cpu, SECONDS_DIGITS),
        "top_wait": top_wait,
        "overflow_samples": profile.overflow_samples,
        "outside_cpu_seconds": _round(scan.outside_cpu, SECONDS_DIGITS),
        **_exact_facts(profile),
        "top_functions": [
            {
                "name": stats.frame.function,
                "file": short_path(stats.frame.file),
                "path": stats.frame.file,
                "line": stats.frame.line,
                "off_cpu": stats.frame.off_cpu,
                "self_cpu_seconds": _round(stats.self_seconds, SECONDS_DIGITS),
                **({"calls": stats.calls} if stats.calls is not None else {}),
                "total_cpu_seconds": (
                    _round(stats.total_seconds, SECONDS_DIGITS) if function_totals else None
                ),
            }
            for stats in (
                exact_function_stats(profile.functions, top)
                if profile.functions
                else _top_functions(profile.stacks, scan, top, function_totals, kept)
            )
        ],
    }


def _windows(processes: list[ProcessInfo]) -> dict[str, Any]:
    """``windows``: the duty cycle a windowed engine (yappi) achieved; absent for others."""
    windows = window_summary(processes)
    return {"windows": windows} if windows is not None else {}


def _exact_facts(profile: EndpointProfile) -> dict[str, Any]:
    """What a tracing engine (yappi) adds, absent for sampling engines: its stacks are estimated
    from a call graph, the CPU its functions account for, calls and requests cut by window edges,
    and the mean CPU of requests served outside windows (next to ``mean_cpu_ms``, the cost of
    tracing)."""
    timed = profile.unprofiled_timed
    if not (profile.functions or timed):
        return {}
    return {
        "stacks_from_call_graph": bool(profile.functions),
        "traced_cpu_seconds": _round(profile.traced_cpu, SECONDS_DIGITS),
        "cut_calls": profile.cut_calls,
        "cut_requests": profile.cut_requests,
        "mean_cpu_unprofiled_ms": _round(
            profile.unprofiled_cpu / timed * 1000 if timed else None, MS_DIGITS
        ),
    }


def _process(process: ProcessInfo) -> dict[str, Any]:
    return {
        "pid": process.pid,
        "host": process.host,
        "cpu_percent": _round(process.cpu_percent, PERCENT_DIGITS),
        "rss_bytes": process.rss_bytes,
        "threads": process.threads,
        "last_seen": _round(process.last_seen, SECONDS_DIGITS),
    }


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    rounded = round(value, digits)
    return 0.0 if rounded == 0 else rounded
