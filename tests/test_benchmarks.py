"""Smoke test of the benchmark harness: every measurement runs in a tiny mode and writes its
files and tables. No timing is asserted (CI machines are too noisy for that)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO_ROOT

EXPECTED_COLUMNS = {
    "inprocess.csv": {"shape", "variant", "ratio_median", "cpu_ratio_median", "wall_us_median"},
    "endtoend.csv": {"shape", "variant", "rps_median", "p99_ms_median", "capacity_ratio_median"},
    "accuracy.csv": {"profiler", "rate", "function", "truth_pct", "measured_pct", "error_pts"},
    "datapath.csv": {"metric", "value"},
    "budget.csv": {"max_overhead", "base_rate", "achieved_median", "effective_rate"},
    "soak.csv": {
        "engine",
        "rate",
        "transport",
        "requests",
        "profiled",
        "rps",
        "rss_start_mb",
        "rss_end_mb",
        "crashes",
        "signals",
        "hangs",
        "returncodes",
    },
}


@pytest.mark.server
def test_smoke_run_writes_every_output(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = tmp_path / "results"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass  # the chart needs the `bench` dependency group
    else:
        assert (results / "overhead.png").stat().st_size > 1000
    for name, columns in EXPECTED_COLUMNS.items():
        with (results / name).open(encoding="utf-8") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            assert columns <= set(reader.fieldnames or ()), name
        if name != "endtoend.csv" or "wrk not found" not in (tmp_path / "RESULTS.md").read_text():
            assert rows, name
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for heading in (
        "## Machine",
        "## Targets",
        "## 1. Cost per request, in-process",
        "## 2. Throughput and p99 end to end",
        "## 3. Accuracy",
        "## 4. Data path scale",
        "## 5. Overhead budget",
        "## 6. Crash soak",
    ):
        assert heading in text
    assert "| shape | variant | CPU µs/request |" in text
    with (results / "soak.csv").open(encoding="utf-8") as file:
        soak_rows = list(csv.DictReader(file))
    assert {(r["engine"], r["rate"], r["transport"]) for r in soak_rows} == {
        (engine, rate, transport)
        for engine in ("pyinstrument", "yappi")
        for rate in ("0.05", "1.0")
        for transport in ("inprocess", "threaded")
    }
    for row in soak_rows:
        assert int(row["crashes"]) == 0, row
        assert int(row["hangs"]) == 0, row
        assert int(row["requests"]) >= 300, row
        assert float(row["rss_end_mb"]) > 0, row


def test_wrk_output_is_parsed() -> None:
    from benchmarks.endtoend import parse_wrk

    output = """Running 1s test @ http://127.0.0.1:1/calls
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.26ms    1.20ms  20.10ms   90.00%
  Latency Distribution
     50%    9.10ms
     75%    9.50ms
     90%   10.20ms
     99%  950.00us
  861 requests in 1.00s, 100.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:    858.61
Transfer/sec:    100.00KB
"""
    result = parse_wrk(output)
    assert result.requests_per_s == pytest.approx(858.61)
    assert result.p50_ms == pytest.approx(9.1)
    assert result.p99_ms == pytest.approx(0.95)
    assert result.requests == 861
    assert result.errors == 3


def test_folded_shares() -> None:
    from benchmarks.accuracy import parse_raw, shares

    stacks = parse_raw(
        "main (a.py:1);acc_loop (b.py:2) 30\nmain (a.py:1);acc_json (b.py:9);dumps (j.py:1) 10\n"
        "main (a.py:1) 60\n 5\n"
    )
    result = shares(stacks)
    assert result["acc_loop"] == pytest.approx(0.75)
    assert result["acc_json"] == pytest.approx(0.25)
    assert result["acc_calls"] == 0.0


def test_hookfree_comparison_runs_every_mode() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.hookfree", "--requests", "3", "--threads", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line.split()[0] for line in done.stdout.splitlines()[2:] if line[:1].strip()]
    assert rows == ["none", "pyspy-gil", "pyspy-all", "stack", "py-spy"], done.stdout
    assert done.stdout.count("profile") == 4, done.stdout
