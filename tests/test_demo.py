"""The README's main command (``make demo``) end to end in its reduced form: gunicorn with two
workers, a short Locust load, two saved runs around EXAMPLE_FAST_REPORT=1, and the comparison."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO_ROOT, unavailable

pytestmark = [pytest.mark.server]


def test_demo_quick_tells_the_story(tmp_path: Path) -> None:
    # Looked up, never imported: importing locust monkey-patches threads with gevent.
    if importlib.util.find_spec("locust") is None:
        unavailable("locust is not installed (it is in the demo dependency group)")
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "examples.flask_app.demo", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "saved run 1 'baseline'" in text
    assert "saved run 2 'fast-report'" in text
    assert "A = baseline   B = fast-report" in text
    render = next(line for line in text.splitlines() if line.startswith("render_rows"))
    self_a, self_b = (float(value) for value in render.split()[-5:-3])
    assert self_b < self_a / 2, render
    assert (out / "diff.html").is_file()
    assert (out / "diff_files" / "flame-data.js").is_file()
    for run in ("baseline", "fast-report"):
        assert (out / run / "report.html").is_file()
        assert (out / run / "all.prof").is_file()
    assert list(out.glob("locust-baseline_stats*.csv"))
