"""wsgiprof.diff on crafted data: per-request normalisation, shares, function matching."""

from __future__ import annotations

import json

import pytest

from wsgiprof.diff import compare, diff_flame, profiles_from_pulled, relative_change
from wsgiprof.export import get_exporter
from wsgiprof.model import OUTSIDE_APP, EndpointProfile, Frame, Weight
from wsgiprof.stores.base import Snapshot
from wsgiprof.summary import build_summary

VIEW = Frame("views.report", "/srv/app/views.py", 10)
BUILD = Frame("build_rows", "/srv/app/report.py", 20)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
HEALTH = Frame("views.health", "/srv/app/views.py", 90)


def _report(sampled: int, build_ms: float, render_ms: float) -> EndpointProfile:
    """``sampled`` requests, each spending ``build_ms`` and ``render_ms`` of CPU."""
    build, render = build_ms / 1000 * sampled, render_ms / 1000 * sampled
    profile = EndpointProfile(
        "GET /report",
        requests=sampled * 10,
        sampled=sampled,
        cpu=build + render,
        wall=build + render,
    )
    profile.stacks = {
        (VIEW, BUILD): Weight(sampled, build, build),
        (VIEW, RENDER): Weight(sampled, render, render),
    }
    return profile


def _health(sampled: int, ms: float) -> EndpointProfile:
    cpu = ms / 1000 * sampled
    profile = EndpointProfile("GET /health", requests=sampled, sampled=sampled, cpu=cpu, wall=cpu)
    profile.stacks = {(HEALTH,): Weight(sampled, cpu, cpu)}
    return profile


def _endpoints(*profiles: EndpointProfile) -> dict[str, EndpointProfile]:
    return {p.name: p for p in profiles}


def test_a_function_made_twice_as_expensive_shows_plus_100_percent() -> None:
    # Run B is three times as long (more requests); per request, render_rows doubled.
    a = _endpoints(_report(20, build_ms=5, render_ms=10), _health(20, 1))
    b = _endpoints(_report(60, build_ms=5, render_ms=20), _health(60, 1))
    diff = compare(a, b, a_label="baseline", b_label="slower")

    render = next(f for f in diff.functions if f.function == "render_rows")
    assert render.self_ms_a == pytest.approx(10)
    assert render.self_ms_b == pytest.approx(20)
    assert render.self_change == pytest.approx(1.0)
    assert render.total_change == pytest.approx(1.0)
    build = next(f for f in diff.functions if f.function == "build_rows")
    assert build.self_change == pytest.approx(0.0)
    view = next(f for f in diff.functions if f.function == "views.report")
    assert view.self_ms_a == 0
    assert view.total_ms_a == pytest.approx(15)
    assert view.total_ms_b == pytest.approx(25)
    assert diff.functions[0] is render, "the largest change comes first"

    report = next(e for e in diff.endpoints if e.name == "GET /report")
    assert report.cpu_ms_a == pytest.approx(15)
    assert report.cpu_ms_b == pytest.approx(25)
    assert report.cpu_change == pytest.approx(10 / 15)
    assert report.share_a == pytest.approx(15 / 16)
    assert report.share_b == pytest.approx(25 / 26)
    assert report.share_change == pytest.approx(25 / 26 - 15 / 16)
    assert diff.endpoints[0].name == "GET /report"


def test_functions_match_across_line_changes_and_new_or_gone_functions() -> None:
    a = _endpoints(_report(10, 5, 10))
    b = _report(10, 5, 0)
    moved = Frame("render_rows", "/srv/app/report.py", 44)
    fast = Frame("render_fast", "/srv/app/report.py", 60)
    b.stacks = {
        (VIEW, BUILD): Weight(10, 0.05, 0.05),
        (VIEW, moved): Weight(10, 0.02, 0.02),
        (VIEW, fast): Weight(10, 0.01, 0.01),
    }
    b.cpu = 0.08
    diff = compare(a, _endpoints(b))
    render = next(f for f in diff.functions if f.function == "render_rows")
    assert (render.line, render.self_ms_a, render.self_ms_b) == (44, 10, 2)
    assert render.self_change == pytest.approx(-0.8)
    new = next(f for f in diff.functions if f.function == "render_fast")
    assert (new.self_ms_a, new.self_change) == (0, None)


def test_endpoints_only_in_one_run() -> None:
    diff = compare(_endpoints(_health(5, 1)), _endpoints(_report(5, 1, 1)))
    names = {e.name: e for e in diff.endpoints}
    assert names["GET /health"].cpu_ms_b is None
    assert names["GET /health"].share_change == pytest.approx(-1.0)
    assert names["GET /report"].cpu_ms_a is None
    assert names["GET /report"].cpu_change is None
    data = json.loads(json.dumps(diff.to_dict()))
    assert {e["name"] for e in data["endpoints"]} == {"GET /health", "GET /report"}


def test_recursion_and_synthetic_frames() -> None:
    profile = _report(1, 0, 0)
    profile.stacks = {(VIEW, VIEW, VIEW): Weight(1, 0.004, 0.004), (OUTSIDE_APP,): Weight()}
    profile.cpu = 0.004
    diff = compare(_endpoints(profile), _endpoints(profile))
    (view,) = (f for f in diff.functions if f.function == "views.report")
    assert view.self_ms_a == pytest.approx(4)
    assert view.total_ms_a == pytest.approx(4)
    assert all(f.file != OUTSIDE_APP.file for f in diff.functions)


def test_relative_change() -> None:
    assert relative_change(10, 20) == 1.0
    assert relative_change(10, 5) == -0.5
    assert relative_change(0, 5) is None
    assert relative_change(None, 5) is None


def test_diff_flame_is_per_request_and_merges_by_name_and_file() -> None:
    a = [_report(20, 5, 10)]
    b = [_report(60, 5, 20)]
    data = diff_flame(a, b, name="GET /report", a_label="x", b_label="y")
    assert data["diff"] == {"a": "x", "b": "y", "per": "request"}
    frames = [f[0] for f in data["frames"]]
    nodes = data["nodes"]
    render = next(i for i, f in enumerate(nodes["frame"]) if frames[f] == "render_rows")
    assert nodes["a"][render] == pytest.approx(10_000)
    assert nodes["b"][render] == pytest.approx(20_000)
    assert data["totals"] == {"a": pytest.approx(15_000), "b": pytest.approx(25_000)}
    assert len(nodes["parent"]) == 3
    all_endpoints = diff_flame(
        [*a, _health(5, 1)], b, name="all", by_endpoint=True, kind=lambda file: "lib"
    )
    roots = [i for i, p in enumerate(all_endpoints["nodes"]["parent"]) if p < 0]
    assert {all_endpoints["frames"][all_endpoints["nodes"]["frame"][i]][0] for i in roots} == {
        "GET /report",
        "GET /health",
    }
    assert {f[4] for f in all_endpoints["frames"]} == {"lib"}


def test_profiles_from_a_pulled_folder_round_trip() -> None:
    endpoints = _endpoints(_report(20, 5, 10), _health(20, 1))
    summary = build_summary(Snapshot(0.0, 1.0, endpoints), engine="pyinstrument", sample_rate=1.0)
    speedscope = json.loads(get_exporter("speedscope.json").export(list(endpoints.values()), "cpu"))
    rebuilt = profiles_from_pulled(summary, speedscope)
    diff = compare(endpoints, rebuilt)
    assert all(f.self_change_ms == pytest.approx(0.0, abs=1e-6) for f in diff.functions)
    assert all(f.total_change_ms == pytest.approx(0.0, abs=1e-6) for f in diff.functions)
    assert all(e.cpu_change == pytest.approx(0.0, abs=1e-6) for e in diff.endpoints)
    with pytest.raises(ValueError, match="wsgiprof pull"):
        profiles_from_pulled({"endpoints": [{}]}, speedscope)
