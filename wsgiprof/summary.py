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
from typing import Any

from wsgiprof.model import (
    SYNTHETIC_FILE,
    EndpointProfile,
    FunctionStats,
    function_stats,
    short_path,
)
from wsgiprof.stores.base import ProcessInfo, Snapshot

SECONDS_DIGITS = 6
"""Seconds are rounded to the microsecond, which is finer than any profiler's resolution."""

MS_DIGITS = 3
SHARE_DIGITS = 6
PERCENT_DIGITS = 2


def build_summary(
    snapshot: Snapshot, *, engine: str, sample_rate: float, top: int = 10
) -> dict[str, Any]:
    """The summary of ``snapshot``: endpoints ranked by CPU, their hottest functions, processes.

    ``top`` limits ``top_functions`` per endpoint (largest self CPU first). Floats are rounded so
    the JSON stays compact; values that cannot be computed (a mean without sampled requests, a
    ratio without wall time) are None, never NaN.
    """
    profiles = list(snapshot.endpoints.values())
    total_cpu = sum(profile.cpu for profile in profiles)
    ranked = sorted(profiles, key=lambda p: (-p.cpu, p.name))
    return {
        "engine": engine,
        "sample_rate": sample_rate,
        "window": {
            "start": _round(snapshot.window_start, SECONDS_DIGITS),
            "end": _round(snapshot.window_end, SECONDS_DIGITS),
        },
        "endpoints": [_endpoint(profile, total_cpu, max(top, 0)) for profile in ranked],
        "processes": [
            _process(process)
            for process in sorted(snapshot.processes, key=lambda p: (p.host, p.pid))
        ],
        "totals": {
            "requests": sum(profile.requests for profile in profiles),
            "sampled": sum(profile.sampled for profile in profiles),
            "cpu_seconds": _round(total_cpu, SECONDS_DIGITS),
            "wall_seconds": _round(sum(profile.wall for profile in profiles), SECONDS_DIGITS),
        },
        "lost_flushes": snapshot.lost_flushes,
    }


def _application_functions(profile: EndpointProfile) -> list[FunctionStats]:
    """Functions by self CPU, leaving out the frames wsgiprof adds (time outside the application,
    requests too short to sample), which are no function a user could change."""
    return [
        stats
        for stats in function_stats(profile.stacks, "cpu")
        if stats.frame.file != SYNTHETIC_FILE
    ]


def _endpoint(profile: EndpointProfile, total_cpu: float, top: int) -> dict[str, Any]:
    sampled = profile.sampled
    p50 = profile.latency.quantile(0.5)
    p95 = profile.latency.quantile(0.95)
    off_cpu = sum(
        weight.wall for stack, weight in profile.stacks.items() if stack and stack[-1].off_cpu
    )
    return {
        "id": profile.id,
        "name": profile.name,
        "requests": profile.requests,
        "sampled": sampled,
        "errors": profile.errors,
        "cpu_seconds": _round(profile.cpu, SECONDS_DIGITS),
        "wall_seconds": _round(profile.wall, SECONDS_DIGITS),
        "cpu_share": _round(profile.cpu / total_cpu if total_cpu > 0 else 0.0, SHARE_DIGITS),
        "mean_cpu_ms": _round(profile.cpu / sampled * 1000 if sampled else None, MS_DIGITS),
        "mean_wall_ms": _round(profile.wall / sampled * 1000 if sampled else None, MS_DIGITS),
        "p50_wall_ms": _round(p50 * 1000 if p50 is not None else None, MS_DIGITS),
        "p95_wall_ms": _round(p95 * 1000 if p95 is not None else None, MS_DIGITS),
        "cpu_wall_ratio": _round(profile.cpu / profile.wall if profile.wall > 0 else None, 4),
        "off_cpu_seconds": _round(off_cpu, SECONDS_DIGITS),
        "overflow_samples": profile.overflow_samples,
        "outside_cpu_seconds": _round(
            sum(
                weight.cpu
                for stack, weight in profile.stacks.items()
                if stack and stack[0].file == SYNTHETIC_FILE
            ),
            SECONDS_DIGITS,
        ),
        "top_functions": [
            {
                "name": stats.frame.function,
                "file": short_path(stats.frame.file),
                "path": stats.frame.file,
                "line": stats.frame.line,
                "off_cpu": stats.frame.off_cpu,
                "self_cpu_seconds": _round(stats.self_seconds, SECONDS_DIGITS),
                "total_cpu_seconds": _round(stats.total_seconds, SECONDS_DIGITS),
            }
            for stats in _application_functions(profile)[:top]
        ],
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
