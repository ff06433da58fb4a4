"""Cost per request in-process: the WSGI callable called directly, no server, no network."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmarks.apps import SHAPE_PATHS, call, environ_for, shapes_app
from benchmarks.settings import SHAPES, Mode
from benchmarks.timing import Batch, Spread, interleave, progress, ratios
from benchmarks.variants import INPROCESS_VARIANTS, VariantUnavailableError, build

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


@dataclass(frozen=True)
class InprocessRow:
    shape: str
    variant: str
    available: bool
    note: str
    requests_per_batch: int
    per_request_us: Spread
    ratio: Spread
    cpu_per_request_us: Spread
    cpu_ratio: Spread


def _batch(app: WSGIApplication, environ: dict[str, object], n: int) -> Batch:
    def run() -> None:
        for _ in range(n):
            call(app, environ)

    return run


def _calibrate(environ: dict[str, object], batch_s: float) -> int:
    call(shapes_app, environ)
    start = time.perf_counter()
    for _ in range(20):
        call(shapes_app, environ)
    per_request = (time.perf_counter() - start) / 20
    return max(10, int(batch_s / per_request))


def run(mode: Mode) -> list[InprocessRow]:
    rows: list[InprocessRow] = []
    for shape in SHAPES:
        environ = environ_for(SHAPE_PATHS[shape])
        n = _calibrate(environ, mode.inproc_batch_s)
        apps: dict[str, WSGIApplication] = {}
        notes: dict[str, str] = {}
        for variant in INPROCESS_VARIANTS:
            try:
                apps[variant] = build(variant, shapes_app)
            except VariantUnavailableError as exc:
                notes[variant] = str(exc)
        for app in apps.values():  # warm up caches (frames, stacks, endpoint names)
            for _ in range(max(3, n // 10)):
                call(app, environ)
        progress(f"in-process {shape}: {len(apps)} variants x {mode.inproc_rounds} rounds x {n}")
        times = interleave(
            {name: _batch(app, environ, n) for name, app in apps.items()},
            mode.inproc_rounds,
            label=f"in-process {shape}",
        )
        for variant in INPROCESS_VARIANTS:
            if variant not in times:
                nan = Spread.of([])
                rows.append(
                    InprocessRow(shape, variant, False, notes[variant], n, nan, nan, nan, nan)
                )
                continue
            mine, bare = times[variant], times["bare"]
            rows.append(
                InprocessRow(
                    shape=shape,
                    variant=variant,
                    available=True,
                    note="",
                    requests_per_batch=n,
                    per_request_us=Spread.of(mine.wall).scaled(1e6 / n),
                    ratio=Spread.of(ratios(mine.wall, bare.wall)),
                    cpu_per_request_us=Spread.of(mine.cpu).scaled(1e6 / n),
                    cpu_ratio=Spread.of(ratios(mine.cpu, bare.cpu)),
                )
            )
        for app in apps.values():
            close = getattr(app, "close", None)
            if callable(close) and hasattr(app, "config"):
                close()
    return rows
