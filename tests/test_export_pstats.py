"""pstats from samples: tt, ct, call counts and caller edges, read back by pstats and snakeviz."""

from __future__ import annotations

import pstats
from pathlib import Path

import pytest

from tests.servers import unavailable
from wsgiprof.export import get_exporter
from wsgiprof.export.pstats import FuncKey, FuncStats, PstatsExporter
from wsgiprof.model import EndpointProfile, Frame, Weight, WeightKind

MAIN = Frame("app.handler", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
QUERY = Frame("run_query", "/srv/app/db.py", 7)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)
FIB = Frame("fib", "/srv/app/maths.py", 3)

MAIN_KEY = ("/srv/app/views.py", 10, "app.handler")
RENDER_KEY = ("/srv/app/report.py", 40, "render_rows")
QUERY_KEY = ("/srv/app/db.py", 7, "run_query")
SLEEP_KEY = ("<built-in>", 0, "sleep [off-CPU]")
FIB_KEY = ("/srv/app/maths.py", 3, "fib")

REPORT = EndpointProfile(
    "GET /report",
    stacks={
        (MAIN,): Weight(samples=2, wall=0.002, cpu=0.001),
        (MAIN, RENDER): Weight(samples=30, wall=0.030, cpu=0.025),
        (MAIN, QUERY, SLEEP): Weight(samples=50, wall=0.050, cpu=0.0),
        (MAIN, QUERY): Weight(samples=10, wall=0.010, cpu=0.004),
    },
)
FIBS = EndpointProfile(
    "GET /fib",
    stacks={
        (MAIN, FIB, FIB, FIB): Weight(samples=5, wall=0.005, cpu=0.005),
        (MAIN, FIB): Weight(samples=1, wall=0.001, cpu=0.001),
    },
)


def load(tmp_path: Path, profiles: list[EndpointProfile], kind: WeightKind) -> pstats.Stats:
    path = tmp_path / "profile.prof"
    path.write_bytes(PstatsExporter().export(profiles, kind))
    return pstats.Stats(str(path))


def entries(stats: pstats.Stats) -> dict[FuncKey, FuncStats]:
    table: dict[FuncKey, FuncStats] = stats.stats  # type: ignore[attr-defined]
    return table


def rounded(entry: FuncStats) -> tuple[object, ...]:
    """``entry`` with times rounded to the nanosecond, so sums of floats compare exactly."""
    cc, nc, tt, ct, callers = entry
    edges = {key: (n, c, round(t, 9), round(cum, 9)) for key, (n, c, t, cum) in callers.items()}
    return (cc, nc, round(tt, 9), round(ct, 9), edges)


def test_wall_times_calls_and_callers_per_function(tmp_path: Path) -> None:
    table = entries(load(tmp_path, [REPORT], "wall"))
    assert set(table) == {MAIN_KEY, RENDER_KEY, QUERY_KEY, SLEEP_KEY}
    assert rounded(table[MAIN_KEY]) == (92, 92, 0.002, 0.092, {})
    assert rounded(table[QUERY_KEY]) == (60, 60, 0.010, 0.060, {MAIN_KEY: (60, 60, 0.010, 0.060)})
    assert rounded(table[SLEEP_KEY]) == (50, 50, 0.050, 0.050, {QUERY_KEY: (50, 50, 0.050, 0.050)})
    assert rounded(table[RENDER_KEY]) == (30, 30, 0.030, 0.030, {MAIN_KEY: (30, 30, 0.030, 0.030)})


def test_cpu_weight_leaves_out_stacks_without_cpu(tmp_path: Path) -> None:
    stats = load(tmp_path, [REPORT], "cpu")
    table = entries(stats)
    assert SLEEP_KEY not in table
    assert rounded(table[QUERY_KEY])[:4] == (10, 10, 0.004, 0.004)
    assert rounded(table[MAIN_KEY])[:4] == (42, 42, 0.001, 0.030)
    assert stats.get_stats_profile().total_tt == 0.030


def test_recursion_counts_each_stack_once_in_cumulative_time(tmp_path: Path) -> None:
    table = entries(load(tmp_path, [FIBS], "cpu"))
    assert rounded(table[FIB_KEY]) == (
        6,
        6,
        0.006,
        0.006,
        {MAIN_KEY: (6, 6, 0.001, 0.006), FIB_KEY: (5, 5, 0.005, 0.005)},
    )
    assert rounded(table[MAIN_KEY])[:4] == (6, 6, 0.0, 0.006)


def test_self_times_add_up_to_the_profile_total(tmp_path: Path) -> None:
    table = entries(load(tmp_path, [REPORT], "wall"))
    assert round(sum(entry[2] for entry in table.values()), 9) == round(REPORT.total("wall"), 9)


def test_several_endpoints_hang_under_one_root(tmp_path: Path) -> None:
    table = entries(load(tmp_path, [REPORT, FIBS], "cpu"))
    root = ("<wsgiprof>", 0, "all endpoints")
    report = ("<endpoint>", 0, "GET /report")
    fibs = ("<endpoint>", 0, "GET /fib")
    assert rounded(table[root]) == (48, 48, 0.0, 0.036, {})
    assert rounded(table[report]) == (42, 42, 0.0, 0.030, {root: (42, 42, 0.0, 0.030)})
    assert rounded(table[fibs]) == (6, 6, 0.0, 0.006, {root: (6, 6, 0.0, 0.006)})
    assert set(table[MAIN_KEY][4]) == {report, fibs}


def test_awkward_names_are_kept_verbatim(tmp_path: Path) -> None:
    odd = Frame('render; "rows"\n<lambda> é', "/srv/app/odd name.py", 5)
    profile = EndpointProfile("GET /odd", stacks={(odd,): Weight(1, 0.001, 0.001)})
    table = entries(load(tmp_path, [profile], "cpu"))
    assert list(table) == [("/srv/app/odd name.py", 5, 'render; "rows"\n<lambda> é')]


def test_empty_profile_still_loads(tmp_path: Path) -> None:
    stats = load(tmp_path, [EndpointProfile("GET /")], "cpu")
    assert stats.get_stats_profile().total_tt == 0
    assert list(entries(stats)) == [("<wsgiprof>", 0, "[no samples]")]


def test_snakeviz_reads_the_table_and_finds_the_call_tree(tmp_path: Path) -> None:
    try:
        import snakeviz.stats as snakeviz_stats
    except ImportError:
        unavailable("snakeviz is not installed (pip install snakeviz)")
    stats = load(tmp_path, [REPORT], "wall")
    rows = {row[-1]: row for row in snakeviz_stats.table_rows(stats)}
    assert rows["/srv/app/db.py:7(run_query)"][:5] == [
        ["60", 60],
        "0.01",
        "0.0001667",
        "0.06",
        "0.001",
    ]
    tree = snakeviz_stats.json_stats(stats)
    main = tree["/srv/app/views.py:10(app.handler)"]
    assert set(main["children"]) == {
        "/srv/app/report.py:40(render_rows)",
        "/srv/app/db.py:7(run_query)",
    }
    assert main["stats"] == [92, 92, pytest.approx(0.002), pytest.approx(0.092)]
    assert tree["<built-in>:0(sleep [off-CPU])"]["callers"] == {
        "/srv/app/db.py:7(run_query)": [50, 50, pytest.approx(0.05), pytest.approx(0.05)]
    }


def test_registry_serves_the_pstats_exporter() -> None:
    assert isinstance(get_exporter("prof"), PstatsExporter)
