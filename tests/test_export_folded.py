"""Folded stacks: one sorted line per stack, integer microseconds, safe frame names."""

from __future__ import annotations

import pytest

from wsgiprof.export import get_exporter
from wsgiprof.export.folded import FoldedExporter
from wsgiprof.model import EndpointProfile, Frame, Stack, Weight

MAIN = Frame("app.handler", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
QUERY = Frame("run_query", "/srv/app/db.py", 7)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)
FIB = Frame("fib", "/srv/app/maths.py", 3)


def profile(name: str, stacks: dict[Stack, Weight]) -> EndpointProfile:
    return EndpointProfile(name, stacks=stacks)


def lines(data: bytes) -> list[str]:
    return data.decode("utf-8").splitlines()


REPORT = profile(
    "GET /report",
    {
        (MAIN, RENDER): Weight(samples=30, wall=0.030, cpu=0.025),
        (MAIN, QUERY, SLEEP): Weight(samples=50, wall=0.050, cpu=0.0),
        (MAIN, QUERY): Weight(samples=10, wall=0.0104, cpu=0.0041),
    },
)


def test_cpu_counts_are_integer_microseconds_sorted_by_stack() -> None:
    out = FoldedExporter().export([REPORT], "cpu")
    assert lines(out) == [
        "app.handler (app/views.py:10);render_rows (app/report.py:40) 25000",
        "app.handler (app/views.py:10);run_query (app/db.py:7) 4100",
    ]


def test_wall_keeps_the_off_cpu_leaf_with_its_marker() -> None:
    out = FoldedExporter().export([REPORT], "wall")
    assert lines(out) == [
        "app.handler (app/views.py:10);render_rows (app/report.py:40) 30000",
        "app.handler (app/views.py:10);run_query (app/db.py:7) 10400",
        "app.handler (app/views.py:10);run_query (app/db.py:7);sleep [off-CPU] 50000",
    ]


def test_counts_add_up_to_the_profile_total_in_microseconds() -> None:
    out = FoldedExporter().export([REPORT], "wall")
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines(out)) == round(
        REPORT.total("wall") * 1e6
    )


def test_weights_that_round_to_zero_microseconds_are_dropped() -> None:
    tiny = profile(
        "GET /",
        {(MAIN,): Weight(1, 0.0000004, 0.0000004), (MAIN, FIB): Weight(1, 0.0000006, 0.0000006)},
    )
    assert lines(FoldedExporter().export([tiny], "cpu")) == [
        "app.handler (app/views.py:10);fib (app/maths.py:3) 1"
    ]


def test_recursion_keeps_every_level_of_the_stack() -> None:
    recursive = profile("GET /fib", {(MAIN, FIB, FIB, FIB): Weight(5, 0.005, 0.005)})
    assert lines(FoldedExporter().export([recursive], "cpu")) == [
        "app.handler (app/views.py:10);fib (app/maths.py:3);fib (app/maths.py:3);"
        "fib (app/maths.py:3) 5000"
    ]


def test_semicolons_and_newlines_in_names_are_replaced_other_characters_kept() -> None:
    odd = Frame('render; "rows"\n<lambda> é', "/srv/app/odd name.py", 5)
    out = FoldedExporter().export(
        [profile("GET /odd", {(MAIN, odd): Weight(1, 0.002, 0.002)})], "cpu"
    )
    assert lines(out) == [
        'app.handler (app/views.py:10);render: "rows" <lambda> é (app/odd name.py:5) 2000'
    ]


def test_several_profiles_get_a_root_frame_naming_the_endpoint() -> None:
    users = profile("GET /users/<int:id>", {(MAIN,): Weight(3, 0.003, 0.002)})
    out = FoldedExporter().export([users, REPORT], "cpu")
    assert lines(out) == [
        "GET /report;app.handler (app/views.py:10);render_rows (app/report.py:40) 25000",
        "GET /report;app.handler (app/views.py:10);run_query (app/db.py:7) 4100",
        "GET /users/<int:id>;app.handler (app/views.py:10) 2000",
    ]


def test_frames_with_the_same_text_are_summed_into_one_line() -> None:
    other_views = Frame("app.handler", "/opt/other/app/views.py", 10)
    same = profile(
        "GET /", {(MAIN,): Weight(1, 0.001, 0.001), (other_views,): Weight(2, 0.002, 0.002)}
    )
    assert lines(FoldedExporter().export([same], "cpu")) == ["app.handler (app/views.py:10) 3000"]


def test_empty_input_gives_an_empty_file() -> None:
    assert FoldedExporter().export([], "cpu") == b""
    assert FoldedExporter().export([profile("GET /", {})], "wall") == b""


def test_registry_serves_the_folded_exporter() -> None:
    exporter = get_exporter("folded")
    assert isinstance(exporter, FoldedExporter)
    assert exporter.media_type.startswith("text/plain")


def test_unknown_format_raises_key_error_listing_the_accepted_ones() -> None:
    with pytest.raises(KeyError, match=r"folded, speedscope\.json, prof, pb\.gz"):
        get_exporter("svg")
