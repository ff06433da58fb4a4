"""The one-paragraph answer at the top of the dashboard, in plain words, computed from a summary.

Pure: the dict of :func:`wsgiprof.summary.build_summary` in, a :class:`Headline` out. It says how
busy the workers were, then either where the CPU went (the endpoint with the largest share and its
hottest function) or, when requests mostly wait, what they wait on.

Example::

    >>> headline(build_summary(snapshot, engine="pyinstrument", sample_rate=0.05)).text
    'Workers were CPU-saturated (96% of a core each). GET /report used 71% of sampled CPU; its
    hottest function is render_rows (app/report.py:40), 38% of its CPU.'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

HeadlineKind = Literal["empty", "idle", "waiting", "saturated", "busy"]

SATURATED_PERCENT = 80.0
"""Mean worker CPU (percent of one core) from which workers count as CPU-saturated."""

WAITING_RATIO = 0.3
"""Overall CPU/wall ratio of the sampled requests below which the app counts as waiting."""

VISIBLE_WAIT_SHARE = 0.5
"""Share of the wall time in visible blocking calls from which the headline names the wait."""

IDLE_PERCENT = 10.0
"""Mean worker CPU below which, with little request time in the window, the app was idle."""

IDLE_BUSY_FRACTION = 0.05
"""Fraction of the window (per worker) spent in requests below which the app was idle."""

HOST_BUSY_PERCENT = 90.0
"""Host CPU from which the headline warns that the host itself was saturated."""


@dataclass(frozen=True, slots=True)
class Headline:
    """``kind`` classifies the window (for styling and tests); ``text`` is what people read."""

    kind: HeadlineKind
    text: str

    def __str__(self) -> str:
        return self.text


def headline(summary: dict[str, Any]) -> Headline:
    """The headline of a summary (the shape of ``GET /api/summary``)."""
    totals = summary.get("totals") or {}
    endpoints: list[dict[str, Any]] = summary.get("endpoints") or []
    sampled = int(totals.get("sampled") or 0)
    requests = int(totals.get("requests") or 0)
    if sampled == 0 or not endpoints:
        if requests == 0:
            return Headline("empty", "No requests profiled yet in this window.")
        rate = _percent(float(summary.get("sample_rate") or 0.0) * 100)
        return Headline(
            "empty",
            f"{requests} {_plural(requests, 'request')} seen, none profiled yet "
            f"(sample rate {rate}); send more traffic and reload.",
        )

    workers = _worker_percent(summary)
    host_sentence = _host_sentence(summary, workers)
    cpu = float(totals.get("cpu_seconds") or 0.0)
    wall = float(totals.get("wall_seconds") or 0.0)
    ratio = cpu / wall if wall > 0 else None

    if _idle(summary, workers, requests, sampled, wall):
        duration = _duration(summary)
        parts = [
            f"The app was mostly idle: {requests} {_plural(requests, 'request')}"
            + (f" in {_seconds(duration)}" if duration else "")
            + (
                f", workers used {_percent(workers)} of a core each."
                if workers is not None
                else "."
            )
        ]
        parts.append(_cpu_sentence(endpoints[0]))
        return Headline("idle", " ".join(p for p in (*parts, host_sentence) if p))

    worker_sentence = _worker_sentence(workers)
    if ratio is not None and ratio < WAITING_RATIO:
        visible = sum(float(e.get("off_cpu_seconds") or 0.0) for e in endpoints)
        if visible >= VISIBLE_WAIT_SHARE * wall:
            middle = _waiting_sentence(endpoints, ratio)
        else:
            middle = (
                _hidden_wait_sentence(ratio, visible / wall) + " " + _cpu_sentence(endpoints[0])
            )
        text = " ".join(p for p in (worker_sentence, middle, host_sentence) if p)
        return Headline("waiting", text)

    kind: HeadlineKind = (
        "saturated" if workers is not None and workers >= SATURATED_PERCENT else "busy"
    )
    text = " ".join(p for p in (worker_sentence, _cpu_sentence(endpoints[0]), host_sentence) if p)
    return Headline(kind, text)


def _worker_percent(summary: dict[str, Any]) -> float | None:
    values = [
        float(p["cpu_percent"])
        for p in summary.get("processes") or []
        if isinstance(p.get("cpu_percent"), (int, float))
    ]
    return sum(values) / len(values) if values else None


def _duration(summary: dict[str, Any]) -> float | None:
    window = summary.get("window") or {}
    start, end = window.get("start"), window.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end > start:
        return float(end - start)
    return None


def _idle(
    summary: dict[str, Any], workers: float | None, requests: int, sampled: int, wall: float
) -> bool:
    """Little CPU used and little time spent in requests: the window saw almost no load."""
    if workers is None or workers >= IDLE_PERCENT:
        return False
    duration = _duration(summary)
    if duration is None:
        return False
    processes = max(1, len(summary.get("processes") or []))
    estimated_wall = wall * requests / sampled
    return estimated_wall / (duration * processes) < IDLE_BUSY_FRACTION


def _worker_sentence(workers: float | None) -> str:
    if workers is None:
        return ""
    if workers >= SATURATED_PERCENT:
        return f"Workers were CPU-saturated ({_percent(workers)} of a core each)."
    return f"Workers used {_percent(workers)} of a core each."


def _host_sentence(summary: dict[str, Any], workers: float | None) -> str:
    host = summary.get("host") or {}
    percent = host.get("cpu_percent")
    if not isinstance(percent, (int, float)) or percent < HOST_BUSY_PERCENT:
        return ""
    if workers is not None and workers >= SATURATED_PERCENT:
        return f"The host's CPUs were {_percent(percent)} busy."
    return (
        f"The host's CPUs were {_percent(percent)} busy: other processes compete with the "
        "workers for CPU."
    )


def _function_label(function: dict[str, Any]) -> str:
    name = str(function.get("name", "?"))
    file = str(function.get("file", ""))
    if not file or file.startswith("<"):
        return name
    return f"{name} ({file}:{function.get('line', 0)})"


def _cpu_sentence(endpoint: dict[str, Any]) -> str:
    share = _percent(float(endpoint.get("cpu_share") or 0.0) * 100)
    text = f"{endpoint['name']} used {share} of sampled CPU"
    functions = endpoint.get("top_functions") or []
    cpu = float(endpoint.get("cpu_seconds") or 0.0)
    if functions and cpu > 0:
        hottest = functions[0]
        part = _percent(float(hottest.get("self_cpu_seconds") or 0.0) / cpu * 100)
        text += f"; its hottest function is {_function_label(hottest)}, {part} of its CPU"
    return text + "."


def _waiting_sentence(endpoints: list[dict[str, Any]], ratio: float) -> str:
    text = (
        f"The app is mostly waiting, not computing: sampled requests spent only "
        f"{_percent(ratio * 100)} of their wall time on CPU."
    )
    waits = [e for e in endpoints if e.get("top_wait")]
    if not waits:
        return text
    endpoint = max(waits, key=lambda e: (float(e["top_wait"]["wall_seconds"] or 0.0), e["name"]))
    wait = endpoint["top_wait"]
    wall = float(endpoint.get("wall_seconds") or 0.0)
    share = float(wait["wall_seconds"] or 0.0) / wall * 100 if wall > 0 else 0.0
    return (
        text + f" The biggest wait is {_function_label(wait)} in {endpoint['name']}, "
        f"{_percent(share)} of its wall time."
    )


def _hidden_wait_sentence(ratio: float, visible_share: float) -> str:
    seen = (
        f"blocking calls in the profiles explain only {_percent(visible_share * 100)} of it"
        if visible_share > 0
        else "no blocking call shows in the profiles"
    )
    return (
        f"Sampled requests spent only {_percent(ratio * 100)} of their wall time on CPU and "
        f"{seen}: threads wait where the profiler cannot see, for the GIL (more busy threads "
        "than cores) or in C code such as a database driver waiting on the network."
    )


def _percent(value: float | None) -> str:
    if value is None:
        return "?"
    if 0 < value < 1:
        return "<1%"
    return f"{value:.0f}%"


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
