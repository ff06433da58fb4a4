"""speedscope JSON: shared deduplicated frames, one sampled profile per endpoint, totals."""

from __future__ import annotations

import json
from typing import Any

from wsgiprof.export import get_exporter
from wsgiprof.export.speedscope import SCHEMA, SpeedscopeExporter
from wsgiprof.model import EndpointProfile, Frame, Stack, Weight, WeightKind

MAIN = Frame("app.handler", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
QUERY = Frame("run_query", "/srv/app/db.py", 7)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)
FIB = Frame("fib", "/srv/app/maths.py", 3)


def profile(name: str, stacks: dict[Stack, Weight]) -> EndpointProfile:
    return EndpointProfile(name, stacks=stacks)


def export(profiles: list[EndpointProfile], kind: WeightKind) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SpeedscopeExporter().export(profiles, kind))
    return document


def names(document: dict[str, Any], sample: list[int]) -> list[str]:
    return [document["shared"]["frames"][index]["name"] for index in sample]


REPORT = profile(
    "GET /report",
    {
        (MAIN, RENDER): Weight(samples=30, wall=0.030, cpu=0.025),
        (MAIN, QUERY, SLEEP): Weight(samples=50, wall=0.050, cpu=0.0),
        (MAIN, QUERY): Weight(samples=10, wall=0.010, cpu=0.004),
    },
)


def test_header_fields() -> None:
    document = export([REPORT], "cpu")
    assert document["$schema"] == SCHEMA
    assert document["exporter"] == "wsgiprof"
    assert document["activeProfileIndex"] == 0
    assert document["name"] == "GET /report (cpu)"


def test_cpu_profile_has_root_first_samples_and_microsecond_weights() -> None:
    document = export([REPORT], "cpu")
    (sampled,) = document["profiles"]
    assert sampled["type"] == "sampled"
    assert sampled["name"] == "GET /report"
    assert sampled["unit"] == "microseconds"
    assert [names(document, sample) for sample in sampled["samples"]] == [
        ["app.handler", "render_rows"],
        ["app.handler", "run_query"],
    ]
    assert sampled["weights"] == [25000, 4000]
    assert sampled["startValue"] == 0
    assert sampled["endValue"] == 29000


def test_wall_profile_keeps_the_marked_off_cpu_leaf() -> None:
    document = export([REPORT], "wall")
    (sampled,) = document["profiles"]
    assert names(document, sampled["samples"][2]) == ["app.handler", "run_query", "sleep [off-CPU]"]
    assert sampled["weights"] == [30000, 10000, 50000]
    assert sampled["endValue"] == 90000


def test_frames_carry_file_and_line_and_are_shared_once() -> None:
    document = export([REPORT], "wall")
    assert document["shared"]["frames"] == [
        {"name": "app.handler", "file": "/srv/app/views.py", "line": 10},
        {"name": "render_rows", "file": "/srv/app/report.py", "line": 40},
        {"name": "run_query", "file": "/srv/app/db.py", "line": 7},
        {"name": "sleep [off-CPU]", "file": "<built-in>", "line": 0},
    ]


def test_recursion_repeats_the_same_frame_index() -> None:
    document = export(
        [profile("GET /fib", {(MAIN, FIB, FIB, FIB): Weight(5, 0.005, 0.005)})], "cpu"
    )
    assert document["profiles"][0]["samples"] == [[0, 1, 1, 1]]
    assert len(document["shared"]["frames"]) == 2


def test_one_profile_per_endpoint_sharing_frames() -> None:
    users = profile("GET /users/<int:id>", {(MAIN, RENDER): Weight(3, 0.003, 0.002)})
    document = export([REPORT, users], "cpu")
    assert document["name"] == "all endpoints (cpu)"
    assert [p["name"] for p in document["profiles"]] == ["GET /report", "GET /users/<int:id>"]
    assert document["profiles"][1]["samples"] == [[0, 1]]
    assert document["profiles"][1]["endValue"] == 2000
    assert len(document["shared"]["frames"]) == 3


def test_awkward_names_survive_json_round_trip() -> None:
    odd = Frame('render; "rows"\n<lambda> é', "/srv/app/odd name.py", 5)
    document = export([profile('GET /q?"é"', {(odd,): Weight(1, 0.001, 0.001)})], "cpu")
    assert document["shared"]["frames"][0]["name"] == 'render; "rows"\n<lambda> é'
    assert document["profiles"][0]["name"] == 'GET /q?"é"'


def test_every_sample_has_a_weight_and_valid_frame_indices() -> None:
    document = export([REPORT], "wall")
    sampled = document["profiles"][0]
    frame_count = len(document["shared"]["frames"])
    assert len(sampled["samples"]) == len(sampled["weights"])
    assert all(0 <= i < frame_count for sample in sampled["samples"] for i in sample)
    assert sum(sampled["weights"]) == sampled["endValue"]


def test_empty_endpoint_gives_an_empty_profile() -> None:
    document = export([profile("GET /", {})], "cpu")
    assert document["shared"]["frames"] == []
    assert document["profiles"] == [
        {
            "type": "sampled",
            "name": "GET /",
            "unit": "microseconds",
            "startValue": 0,
            "endValue": 0,
            "samples": [],
            "weights": [],
        }
    ]


def test_no_endpoints_still_gives_the_active_profile() -> None:
    document = export([], "cpu")
    assert len(document["profiles"]) == 1
    assert document["profiles"][0]["samples"] == []


def test_registry_serves_the_speedscope_exporter() -> None:
    exporter = get_exporter("speedscope.json")
    assert isinstance(exporter, SpeedscopeExporter)
    assert exporter.media_type == "application/json"
