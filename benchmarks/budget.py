"""Overhead budget: the achieved overhead against the budget, on the call-heavy shape.

When :class:`wsgiprof.Config` has a ``max_overhead`` field the middleware applies the budget
itself. Until then a small driver does what the middleware will do (see :mod:`wsgiprof.budget`):
it times every request, feeds :class:`~wsgiprof.budget.OverheadBudget` and
:class:`~wsgiprof.budget.Baselines`, and decides sampling through ``ProfilerMiddleware(app,
sampler=...)`` from the budget's rate. Its own bookkeeping is part of what is measured.

Achieved overhead = (thread CPU time of a batch with the budget) / (the same for the bare app) - 1,
interleaved round by round (the shape is CPU-bound; CPU time resists a noisy, shared machine).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmarks.apps import SHAPE_PATHS, call, environ_for, shapes_app
from benchmarks.settings import Mode
from benchmarks.timing import Batch, Spread, interleave, progress, ratios
from benchmarks.variants import config_for
from wsgiprof import Config, ProfilerMiddleware
from wsgiprof.budget import Baselines, OverheadBudget

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

SHAPE = "calls"
SETTINGS: tuple[tuple[float, float], ...] = ((0.02, 0.05), (0.02, 1.0), (0.05, 1.0))
"""(max_overhead, configured sample rate) pairs measured."""


@dataclass(frozen=True)
class BudgetRow:
    max_overhead: float
    base_rate: float
    driver: str
    achieved: Spread
    estimated: float
    effective_rate: float


class BudgetDriver:
    """What the middleware will do with ``WSGIPROF_MAX_OVERHEAD``, done from outside it."""

    def __init__(self, app: WSGIApplication, max_overhead: float, base_rate: float) -> None:
        self.budget = OverheadBudget(max_overhead, base_rate)
        self.baselines = Baselines()
        self._random = random.Random(5).random
        self.middleware = ProfilerMiddleware(app, config=config_for(0.0), sampler=self._decide)

    def _decide(self, environ: WSGIEnvironment) -> bool:
        return self._random() < self.budget.rate()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start = time.perf_counter()
        body = self.middleware(environ, start_response)
        wall = time.perf_counter() - start
        key = environ.get("PATH_INFO", "")
        if environ.get("wsgiprof.profiled"):
            self.budget.record(self.baselines.excess(key, wall), wall)
        else:
            self.budget.observe(wall)
            self.baselines.update(key, wall)
        return body


def _build(max_overhead: float, base_rate: float) -> tuple[WSGIApplication, str, OverheadBudget]:
    fields = {f.name for f in dataclasses.fields(Config)}
    if "max_overhead" in fields:
        config = config_for(base_rate).replace(max_overhead=max_overhead)
        middleware = ProfilerMiddleware(shapes_app, config=config)
        budget = getattr(middleware, "_budget", None)
        if isinstance(budget, OverheadBudget):
            return middleware, "middleware (WSGIPROF_MAX_OVERHEAD)", budget
        return middleware, "middleware (WSGIPROF_MAX_OVERHEAD)", OverheadBudget(0.5, 0.0)
    driver = BudgetDriver(shapes_app, max_overhead, base_rate)
    return driver, "benchmark driver (middleware has no max_overhead yet)", driver.budget


def _batch(app: WSGIApplication, environ: dict[str, object], n: int) -> Batch:
    def run() -> None:
        for _ in range(n):
            call(app, environ)

    return run


def run(mode: Mode) -> list[BudgetRow]:
    environ = environ_for(SHAPE_PATHS[SHAPE])
    start = time.perf_counter()
    for _ in range(20):
        call(shapes_app, environ)
    n = max(10, int(mode.budget_batch_s / ((time.perf_counter() - start) / 20)))
    built = {f"{m}/{r}": _build(m, r) for m, r in SETTINGS}
    apps: dict[str, WSGIApplication] = {"bare": shapes_app}
    apps |= {key: app for key, (app, _, _) in built.items()}
    apps["fixed 5%"] = ProfilerMiddleware(shapes_app, config=config_for(0.05))
    warm = max(50, n // 2)
    for app in apps.values():  # let each budget learn its costs before measuring
        for _ in range(warm):
            call(app, environ)
    progress(f"budget: {len(apps)} variants x {mode.budget_rounds} rounds x {n} requests")
    times = interleave(
        {name: _batch(app, environ, n) for name, app in apps.items()},
        mode.budget_rounds,
        label="budget",
    )
    rows = []
    for (m, r), (key, (_, driver, budget)) in zip(SETTINGS, built.items(), strict=True):
        achieved = Spread.of([x - 1 for x in ratios(times[key].cpu, times["bare"].cpu)])
        rows.append(BudgetRow(m, r, driver, achieved, budget.overhead(), budget.rate()))
    fixed = Spread.of([x - 1 for x in ratios(times["fixed 5%"].cpu, times["bare"].cpu)])
    rows.append(BudgetRow(float("nan"), 0.05, "no budget (fixed rate)", fixed, float("nan"), 0.05))
    return rows
