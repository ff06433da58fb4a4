"""build_summary: the JSON shape of GET /api/summary from a crafted snapshot with known numbers."""

from __future__ import annotations

import json

import pytest

from wsgiprof.engines import engine_reason
from wsgiprof.model import (
    UNSAMPLED,
    EndpointProfile,
    Frame,
    ProfiledRequest,
    Stack,
    Weight,
    function_stats,
)
from wsgiprof.stores.base import ProcessInfo, Snapshot
from wsgiprof.summary import SummaryCache, build_summary, verdict

MAIN = Frame("views.report", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)
QUERY = Frame("db.query", "/srv/app/db.py", 5)


def _profile(
    name: str,
    *,
    requests: int,
    sampled: int,
    cpu: float,
    wall: float,
    stacks: dict[Stack, Weight],
    latencies: tuple[float, ...] = (),
    errors: int = 0,
) -> EndpointProfile:
    profile = EndpointProfile(
        name, requests=requests, sampled=sampled, errors=errors, cpu=cpu, wall=wall, stacks=stacks
    )
    for seconds in latencies:
        profile.latency.add(seconds)
    return profile


def _snapshot() -> Snapshot:
    report = _profile(
        "GET /report",
        requests=10,
        sampled=2,
        errors=1,
        cpu=0.3,
        wall=0.5,
        latencies=(0.1, 0.4),
        stacks={
            (MAIN, RENDER): Weight(samples=20, wall=0.2, cpu=0.2),
            (MAIN,): Weight(samples=10, wall=0.1, cpu=0.1),
            (MAIN, SLEEP): Weight(samples=20, wall=0.2, cpu=0.0),
        },
    )
    users = _profile(
        "GET /users/<int:user_id>",
        requests=4,
        sampled=1,
        cpu=0.1,
        wall=0.1,
        latencies=(0.1,),
        stacks={(QUERY,): Weight(samples=10, wall=0.1, cpu=0.1)},
    )
    health = _profile("GET /health", requests=7, sampled=0, cpu=0.0, wall=0.0, stacks={})
    health.overflow_samples = 3
    return Snapshot(
        window_start=1764230400.0,
        window_end=1764230460.1234567,
        endpoints={p.name: p for p in (health, users, report)},
        processes=[
            ProcessInfo(
                pid=20,
                host="b",
                cpu_percent=12.3456,
                rss_bytes=2048,
                threads=4,
                last_seen=1764230459.0,
            ),
            ProcessInfo(
                pid=10,
                host="a",
                cpu_percent=96.0,
                rss_bytes=52428800,
                threads=8,
                last_seen=1764230458.5,
            ),
        ],
        lost_flushes=2,
    )


def test_top_level_fields() -> None:
    summary = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05)
    assert summary["engine"] == "pyinstrument"
    assert summary["sample_rate"] == 0.05
    assert summary["window"] == {"start": 1764230400.0, "end": 1764230460.123457}
    assert summary["totals"] == {
        "requests": 21,
        "sampled": 3,
        "cpu_seconds": 0.4,
        "wall_seconds": 0.6,
    }
    assert summary["lost_flushes"] == 2


def test_endpoints_sorted_by_cpu_with_shares_adding_to_one() -> None:
    endpoints = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05)["endpoints"]
    assert [e["name"] for e in endpoints] == [
        "GET /report",
        "GET /users/<int:user_id>",
        "GET /health",
    ]
    assert [e["cpu_share"] for e in endpoints] == [0.75, 0.25, 0.0]
    assert sum(e["cpu_share"] for e in endpoints) == pytest.approx(1.0)


def test_endpoint_fields() -> None:
    snapshot = _snapshot()
    report = build_summary(snapshot, engine="pyinstrument", sample_rate=0.05)["endpoints"][0]
    assert report["id"] == snapshot.endpoints["GET /report"].id
    assert {
        k: v for k, v in report.items() if k not in {"top_functions", "p50_wall_ms", "p95_wall_ms"}
    } == {
        "id": report["id"],
        "name": "GET /report",
        "requests": 10,
        "sampled": 2,
        "errors": 1,
        "cpu_seconds": 0.3,
        "wall_seconds": 0.5,
        "cpu_share": 0.75,
        "mean_cpu_ms": 150.0,
        "mean_wall_ms": 250.0,
        "cpu_wall_ratio": 0.6,
        "verdict": "mixed",
        "off_cpu_seconds": 0.2,
        "top_wait": {"name": "sleep", "file": "<built-in>", "line": 0, "wall_seconds": 0.2},
        "overflow_samples": 0,
        "outside_cpu_seconds": 0.0,
    }
    assert report["p50_wall_ms"] == pytest.approx(100.0, rel=0.05)
    assert report["p95_wall_ms"] == pytest.approx(400.0, rel=0.05)


def test_top_functions_self_and_total() -> None:
    report = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05)["endpoints"][0]
    assert report["top_functions"] == [
        {
            "name": "render_rows",
            "file": "app/report.py",
            "path": "/srv/app/report.py",
            "line": 40,
            "off_cpu": False,
            "self_cpu_seconds": 0.2,
            "total_cpu_seconds": 0.2,
        },
        {
            "name": "views.report",
            "file": "app/views.py",
            "path": "/srv/app/views.py",
            "line": 10,
            "off_cpu": False,
            "self_cpu_seconds": 0.1,
            "total_cpu_seconds": 0.3,
        },
        {
            "name": "sleep",
            "file": "<built-in>",
            "path": "<built-in>",
            "line": 0,
            "off_cpu": True,
            "self_cpu_seconds": 0.0,
            "total_cpu_seconds": 0.0,
        },
    ]


def test_top_limits_functions() -> None:
    summary = build_summary(_snapshot(), engine="yappi", sample_rate=1.0, top=1)
    assert [f["name"] for f in summary["endpoints"][0]["top_functions"]] == ["render_rows"]
    summary = build_summary(_snapshot(), engine="yappi", sample_rate=1.0, top=0)
    assert summary["endpoints"][0]["top_functions"] == []


def test_unsampled_endpoint_has_no_means() -> None:
    health = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05)["endpoints"][2]
    assert health["requests"] == 7
    assert health["sampled"] == 0
    assert health["overflow_samples"] == 3
    for key in ("mean_cpu_ms", "mean_wall_ms", "p50_wall_ms", "p95_wall_ms", "cpu_wall_ratio"):
        assert health[key] is None
    assert health["top_functions"] == []


def test_processes_sorted_and_rounded() -> None:
    processes = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05)["processes"]
    assert processes == [
        {
            "pid": 10,
            "host": "a",
            "cpu_percent": 96.0,
            "rss_bytes": 52428800,
            "threads": 8,
            "last_seen": 1764230458.5,
        },
        {
            "pid": 20,
            "host": "b",
            "cpu_percent": 12.35,
            "rss_bytes": 2048,
            "threads": 4,
            "last_seen": 1764230459.0,
        },
    ]


def test_empty_snapshot() -> None:
    summary = build_summary(
        Snapshot(window_start=100.0, window_end=160.0), engine="pyinstrument", sample_rate=0.05
    )
    assert summary == {
        "engine": "pyinstrument",
        "engine_reason": engine_reason("pyinstrument"),
        "sample_rate": 0.05,
        "window": {"start": 100.0, "end": 160.0},
        "endpoints": [],
        "processes": [],
        "host": None,
        "totals": {"requests": 0, "sampled": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0},
        "lost_flushes": 0,
    }


def test_strict_json_and_compact_floats() -> None:
    snapshot = _snapshot()
    snapshot.endpoints["GET /report"].cpu = 0.1 + 0.2
    snapshot.processes[0].cpu_percent = float("nan")
    summary = build_summary(snapshot, engine="pyinstrument", sample_rate=0.05)
    text = json.dumps(summary, allow_nan=False)
    assert "0.30000000000000004" not in text
    assert summary["processes"][1]["cpu_percent"] is None


@pytest.mark.parametrize("engine", ["pyinstrument", "yappi", "pyroscope"])
def test_the_summary_says_which_engine_ran_and_why(engine: str) -> None:
    window = Snapshot(window_start=1.0, window_end=2.0)
    summary = build_summary(window, engine=engine, sample_rate=1)
    reason = summary["engine_reason"]
    if engine == "pyinstrument":
        assert reason.startswith("the default engine")
        assert "docs/hook-free-engine.md" in reason
    else:
        assert reason.startswith("chosen with WSGIPROF_ENGINE")


def test_top_functions_leave_out_frames_wsgiprof_adds() -> None:
    app_frame = Frame("handler", "/srv/app/views.py", 3)
    profile = EndpointProfile("GET /tiny")
    profile.add_request(
        ProfiledRequest(
            endpoint="GET /tiny",
            start=0.0,
            wall=0.004,
            cpu=0.004,
            status=200,
            stacks={
                (UNSAMPLED,): Weight(1, 0.003, 0.003),
                (app_frame,): Weight(1, 0.001, 0.001),
            },
        )
    )
    snapshot = Snapshot(window_start=0.0, window_end=1.0, endpoints={"GET /tiny": profile})
    entry = build_summary(snapshot, engine="pyinstrument", sample_rate=1.0)["endpoints"][0]
    assert [f["name"] for f in entry["top_functions"]] == ["handler"]
    assert entry["outside_cpu_seconds"] == pytest.approx(0.003)


def test_host_reading_passes_through() -> None:
    host = {"cpu_percent": 55.0, "load": [1.0, 0.5, 0.25], "cores": 2, "memory_percent": 40.0}
    summary = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05, host=host)
    assert summary["host"] == host


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(None, None), (0.0, "waiting"), (0.29, "waiting"), (0.3, "mixed"), (0.7, "cpu-bound")],
)
def test_verdict(ratio: float | None, expected: str | None) -> None:
    assert verdict(ratio) == expected


def _wide_profile(leaves: int) -> EndpointProfile:
    """An endpoint whose handler calls ``leaves`` functions of growing cost, some through a
    shared helper, so self and total CPU differ and ties exist."""
    handler = Frame("handler", "/srv/app/views.py", 1)
    helper = Frame("helper", "/srv/app/util.py", 1)
    stacks: dict[Stack, Weight] = {}
    for n in range(leaves):
        leaf = Frame(f"f{n}", "/srv/app/work.py", n)
        cost = 0.001 * (n // 2 + 1)
        stacks[(handler, leaf)] = Weight(1, cost, cost)
        if n % 3 == 0:
            stacks[(handler, helper, leaf)] = Weight(1, cost, cost)
            stacks[(handler, leaf, helper)] = Weight(1, cost / 2, cost / 2)
    stacks[(UNSAMPLED,)] = Weight(1, 0.5, 0.5)
    cpu = sum(w.cpu for w in stacks.values())
    return _profile("GET /wide", requests=1, sampled=1, cpu=cpu, wall=cpu, stacks=stacks)


@pytest.mark.parametrize("leaves", [1, 4, 12, 40])
@pytest.mark.parametrize("top", [1, 3, 10])
def test_top_functions_match_full_function_stats(leaves: int, top: int) -> None:
    """The fast path (leaves only, totals for the candidates) ranks like the full statistics."""
    profile = _wide_profile(leaves)
    snapshot = Snapshot(window_start=0.0, window_end=1.0, endpoints={profile.name: profile})
    entry = build_summary(snapshot, engine="pyinstrument", sample_rate=1.0, top=top)["endpoints"][0]
    expected = [s for s in function_stats(profile.stacks, "cpu") if s.frame.file != "<wsgiprof>"][
        :top
    ]
    assert [(f["name"], f["line"]) for f in entry["top_functions"]] == [
        (s.frame.function, s.frame.line) for s in expected
    ]
    for got, want in zip(entry["top_functions"], expected, strict=True):
        assert got["self_cpu_seconds"] == pytest.approx(want.self_seconds, abs=1e-6)
        assert got["total_cpu_seconds"] == pytest.approx(want.total_seconds, abs=1e-6)


def test_function_totals_can_be_skipped() -> None:
    summary = build_summary(
        _snapshot(), engine="pyinstrument", sample_rate=0.05, top=1, function_totals=False
    )
    top = summary["endpoints"][0]["top_functions"]
    assert [(f["name"], f["total_cpu_seconds"]) for f in top] == [("render_rows", None)]


def test_cache_reuses_unchanged_endpoints() -> None:
    cache = SummaryCache()
    first = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05, cache=cache)
    assert (cache.hits, cache.misses) == (0, 3)
    again = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05, cache=cache)
    assert (cache.hits, cache.misses) == (3, 3)
    assert again == first
    changed = _snapshot()
    report = changed.endpoints["GET /report"]
    report.add_request(
        ProfiledRequest(
            endpoint="GET /report",
            start=0.0,
            wall=0.1,
            cpu=0.1,
            status=200,
            stacks={(MAIN, QUERY): Weight(5, 0.1, 0.1)},
        )
    )
    del changed.endpoints["GET /health"]
    updated = build_summary(changed, engine="pyinstrument", sample_rate=0.05, cache=cache)
    assert (cache.hits, cache.misses) == (4, 4)
    assert updated["endpoints"][0]["sampled"] == 3
    assert "GET /health" not in cache._entries
