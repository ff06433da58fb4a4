"""The headline's wording on crafted summaries: saturated, busy, waiting (visible and hidden
waits), idle and empty windows."""

from __future__ import annotations

from typing import Any

import pytest

from wsgiprof.headline import Headline, headline


def _endpoint(
    name: str,
    *,
    cpu: float,
    wall: float,
    share: float,
    sampled: int = 10,
    off_cpu: float = 0.0,
    wait: dict[str, Any] | None = None,
    functions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "sampled": sampled,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "cpu_share": share,
        "off_cpu_seconds": off_cpu,
        "top_wait": wait,
        "top_functions": functions or [],
    }


RENDER = {
    "name": "render_rows",
    "file": "app/report.py",
    "line": 40,
    "self_cpu_seconds": 2.66,
    "total_cpu_seconds": 3.0,
}


def _summary(
    endpoints: list[dict[str, Any]],
    *,
    processes: list[float | None] = (),  # type: ignore[assignment]
    requests: int | None = None,
    window: tuple[float, float] = (1000.0, 1060.0),
    host: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "engine": "pyinstrument",
        "sample_rate": 0.05,
        "window": {"start": window[0], "end": window[1]},
        "endpoints": endpoints,
        "processes": [{"pid": 100 + i, "cpu_percent": p} for i, p in enumerate(processes)],
        "host": host,
        "totals": {
            "requests": requests
            if requests is not None
            else sum(e["sampled"] for e in endpoints) * 20,
            "sampled": sum(e["sampled"] for e in endpoints),
            "cpu_seconds": sum(e["cpu_seconds"] for e in endpoints),
            "wall_seconds": sum(e["wall_seconds"] for e in endpoints),
        },
    }


def test_saturated() -> None:
    summary = _summary(
        [
            _endpoint("GET /report", cpu=7.0, wall=8.0, share=0.71, functions=[RENDER]),
            _endpoint("GET /users/<int:user_id>", cpu=2.86, wall=3.5, share=0.29),
        ],
        processes=[95.0, 97.0],
    )
    result = headline(summary)
    assert result == Headline(
        "saturated",
        "Workers were CPU-saturated (96% of a core each). GET /report used 71% of sampled CPU; "
        "its hottest function is render_rows (app/report.py:40), 38% of its CPU.",
    )
    assert str(result) == result.text


def test_busy_without_process_readings() -> None:
    summary = _summary([_endpoint("POST /login", cpu=1.0, wall=1.2, share=1.0)])
    result = headline(summary)
    assert result.kind == "busy"
    assert result.text == "POST /login used 100% of sampled CPU."


def test_builtin_hottest_function_has_no_location() -> None:
    pbkdf2 = {"name": "pbkdf2_hmac", "file": "<built-in>", "line": 0, "self_cpu_seconds": 0.9}
    summary = _summary(
        [_endpoint("POST /login", cpu=1.0, wall=1.1, share=1.0, functions=[pbkdf2])],
        processes=[50.0],
    )
    assert headline(summary).text == (
        "Workers used 50% of a core each. POST /login used 100% of sampled CPU; its hottest "
        "function is pbkdf2_hmac, 90% of its CPU."
    )


def test_waiting_on_a_visible_call() -> None:
    sleep = {"name": "sleep", "file": "<built-in>", "line": 0, "wall_seconds": 2.7}
    summary = _summary(
        [
            _endpoint("GET /inventory", cpu=0.1, wall=3.0, share=0.5, off_cpu=2.7, wait=sleep),
            _endpoint("GET /health", cpu=0.1, wall=0.15, share=0.5),
        ],
        processes=[6.0],
        window=(0.0, 10.0),
    )
    result = headline(summary)
    assert result.kind == "waiting"
    assert result.text == (
        "Workers used 6% of a core each. The app is mostly waiting, not computing: sampled "
        "requests spent only 6% of their wall time on CPU. The biggest wait is sleep in "
        "GET /inventory, 90% of its wall time."
    )


def test_waiting_names_the_longest_wait_over_all_endpoints() -> None:
    recv = {"name": "socket.recv", "file": "<built-in>", "line": 0, "wall_seconds": 4.0}
    sleep = {"name": "sleep", "file": "<built-in>", "line": 0, "wall_seconds": 1.0}
    summary = _summary(
        [
            _endpoint("GET /a", cpu=0.2, wall=1.2, share=0.5, off_cpu=1.0, wait=sleep),
            _endpoint("GET /b", cpu=0.2, wall=5.0, share=0.5, off_cpu=4.0, wait=recv),
        ],
        processes=[20.0],
        window=(0.0, 10.0),
    )
    text = headline(summary).text
    assert "The biggest wait is socket.recv in GET /b, 80% of its wall time." in text


def test_waiting_the_profiler_cannot_see() -> None:
    """psycopg2 waits show no frame at all: the headline says so instead of blaming code."""
    query = {
        "name": "fetch_orders",
        "file": "app/db.py",
        "line": 12,
        "self_cpu_seconds": 0.05,
    }
    summary = _summary(
        [_endpoint("GET /orders", cpu=0.1, wall=2.0, share=1.0, functions=[query])],
        processes=[30.0],
        window=(0.0, 10.0),
    )
    result = headline(summary)
    assert result.kind == "waiting"
    assert result.text == (
        "Workers used 30% of a core each. Sampled requests spent only 5% of their wall time on "
        "CPU and no blocking call shows in the profiles: threads wait where the profiler cannot "
        "see, for the GIL (more busy threads than cores) or in C code such as a database driver "
        "waiting on the network. GET /orders used 100% of sampled CPU; its hottest function is "
        "fetch_orders (app/db.py:12), 50% of its CPU."
    )


def test_idle_window() -> None:
    summary = _summary(
        [_endpoint("GET /health", cpu=0.01, wall=0.02, share=1.0, sampled=4)],
        processes=[1.0, 2.0],
        requests=80,
        window=(0.0, 600.0),
    )
    result = headline(summary)
    assert result.kind == "idle"
    assert result.text == (
        "The app was mostly idle: 80 requests in 10 min, workers used 2% of a core each. "
        "GET /health used 100% of sampled CPU."
    )


def test_empty_window() -> None:
    result = headline(_summary([]))
    assert result == Headline("empty", "No requests profiled yet in this window.")


def test_requests_seen_but_none_sampled() -> None:
    summary = _summary([_endpoint("GET /health", cpu=0.0, wall=0.0, share=0.0, sampled=0)])
    summary["totals"]["requests"] = 12
    assert headline(summary) == Headline(
        "empty",
        "12 requests seen, none profiled yet (sample rate 5%); send more traffic and reload.",
    )


@pytest.mark.parametrize(
    ("host_cpu", "expected"),
    [
        (50.0, None),
        (97.0, "The host's CPUs were 97% busy: other processes compete with the workers for CPU."),
    ],
)
def test_busy_host_is_mentioned(host_cpu: float, expected: str | None) -> None:
    summary = _summary(
        [_endpoint("GET /report", cpu=1.0, wall=1.2, share=1.0)],
        processes=[40.0],
        host={"cpu_percent": host_cpu, "load": [3.0, 2.0, 1.0], "cores": 2},
    )
    text = headline(summary).text
    if expected is None:
        assert "host" not in text
    else:
        assert text.endswith(expected)
