"""Accuracy: does the profile say where the CPU went? Against the app's own measured truth.

The :class:`~benchmarks.apps.AccuracyApp` times each of its four functions with
``time.thread_time()``. After N requests at a sample rate, wsgiprof's CPU-weighted stacks give
each function's share (CPU of the stacks containing it over the CPU of stacks containing any of the
four); the same for py-spy, recording this very process out of process on the same run
(``py-spy record --format raw --rate 1000``; py-spy drops idle samples by default, so its share is
of the non-idle wall samples). Error = measured share - true share, in percentage points.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.apps import ACCURACY_FUNCTIONS, AccuracyApp, call, environ_for
from benchmarks.settings import Mode
from benchmarks.timing import progress
from benchmarks.variants import config_for
from wsgiprof import ProfilerMiddleware

RATES: tuple[float, ...] = (0.01, 0.10)


@dataclass(frozen=True)
class AccuracyRow:
    profiler: str
    rate: float
    requests: int
    sampled: int
    function: str
    truth_pct: float
    measured_pct: float
    error_pts: float
    truth_profiled_pct: float
    error_vs_profiled_pts: float
    note: str


def shares(weighted_stacks: Iterable[tuple[Iterable[str], float]]) -> dict[str, float]:
    """Share of each accuracy function in the weight of the stacks that contain any of them."""
    totals = dict.fromkeys(ACCURACY_FUNCTIONS, 0.0)
    grand = 0.0
    for names, weight in weighted_stacks:
        present = set(names) & totals.keys()
        if not present:
            continue
        grand += weight
        for name in present:
            totals[name] += weight
    return {name: (value / grand if grand > 0 else float("nan")) for name, value in totals.items()}


def parse_raw(text: str) -> list[tuple[list[str], float]]:
    """py-spy's raw (folded) output: ``frame;frame;... count``, frames ``name (file:line)``."""
    stacks: list[tuple[list[str], float]] = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.strip() or not count.isdigit():
            continue
        names = [frame.split(" (", 1)[0] for frame in stack.split(";")]
        stacks.append((names, float(count)))
    return stacks


class PySpy:
    """``py-spy record`` attached to this process until :meth:`stop`."""

    def __init__(self, rate: int = 1000) -> None:
        self.dir = tempfile.mkdtemp(prefix="wsgiprof-bench-pyspy-")
        self.out = Path(self.dir) / "raw.txt"
        self.err = Path(self.dir) / "stderr.txt"
        exe = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy not installed")
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    str(rate),
                    "--pid",
                    str(os.getpid()),
                    "-o",
                    str(self.out),
                ],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while "Sampling" not in self.err.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                message = self.err.read_text(errors="replace")[-500:].strip()
                self.stop()
                raise RuntimeError(f"py-spy could not attach: {message or 'no output'}")
            time.sleep(0.05)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self.out.read_text(errors="replace") if self.out.exists() else ""
        shutil.rmtree(self.dir, ignore_errors=True)
        return text


def _rows(
    profiler: str,
    rate: float,
    requests: int,
    sampled: int,
    truth: Mapping[str, float],
    truth_profiled: Mapping[str, float],
    measured: Mapping[str, float],
    note: str = "",
) -> list[AccuracyRow]:
    rows = []
    for name in ACCURACY_FUNCTIONS:
        t = truth[name] * 100
        tp = truth_profiled.get(name, float("nan")) * 100
        m = measured.get(name, float("nan")) * 100
        rows.append(
            AccuracyRow(profiler, rate, requests, sampled, name, t, m, m - t, tp, m - tp, note)
        )
    return rows


def _normalised(values: Mapping[str, float]) -> dict[str, float]:
    total = sum(values.values())
    return {name: value / total for name, value in values.items()} if total > 0 else {}


def run(mode: Mode) -> list[AccuracyRow]:
    rows: list[AccuracyRow] = []
    environ = environ_for("/accuracy")
    n = mode.accuracy_requests
    for rate in RATES:
        app = AccuracyApp(seed=int(rate * 1000))
        middleware = ProfilerMiddleware(app, config=config_for(rate))
        spy: PySpy | None = None
        spy_note = ""
        try:
            spy = PySpy()
        except RuntimeError as exc:
            spy_note = str(exc)
        progress(f"accuracy at {rate:.0%}: {n} requests" + (" with py-spy" if spy else ""))
        try:
            for _ in range(n):
                call(middleware, environ)
        finally:
            raw = spy.stop() if spy is not None else ""
        truth = _normalised(app.truth)
        profiled_truth = _normalised(app.truth_profiled)
        snapshot = middleware.read()
        middleware.close()
        profiles = list(snapshot.endpoints.values())
        sampled = sum(p.sampled for p in profiles)
        weighted = [
            ([frame.function for frame in stack], weight.cpu)
            for profile in profiles
            for stack, weight in profile.stacks.items()
        ]
        rows += _rows(
            "wsgiprof (pyinstrument)", rate, n, sampled, truth, profiled_truth, shares(weighted)
        )
        rows += _rows("wsgiprof (yappi)", rate, n, 0, truth, {}, {}, "not available yet")
        if spy is not None:
            stacks = parse_raw(raw)
            if stacks:
                rows += _rows("py-spy (out of process)", rate, n, n, truth, truth, shares(stacks))
            else:
                spy_note = "py-spy wrote no samples"
        if spy_note:
            rows += _rows("py-spy (out of process)", rate, n, 0, truth, {}, {}, spy_note)
    return rows
