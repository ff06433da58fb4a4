"""Shared timing helper: interleaved repetitions, median and interquartile range, ratios.

Variants are never measured one after the other in long blocks: each round runs one batch of
every variant, in a rotating order, so slow drifts of a shared, noisy machine (another process
waking up, frequency changes) hit all variants alike. Ratios are taken round by round against the
bare variant of the same round, then summarised.

Each batch reports wall time and the CPU time of its thread (``time.thread_time()``). On a shared
machine the CPU time of a CPU-bound batch hardly moves when other processes steal the core, while
its wall time does; for waiting workloads only the wall time means anything.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Median and interquartile range (first and third quartiles) of some measurements."""

    median: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        if len(values) == 1:
            return cls(values[0], values[0], values[0], 1)
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, q1, q3, len(values))

    def scaled(self, factor: float) -> Spread:
        return Spread(self.median * factor, self.q1 * factor, self.q3 * factor, self.n)


Batch = Callable[[], None]


@dataclass(frozen=True)
class Timings:
    """Wall and thread CPU seconds of every batch of one variant, round by round."""

    wall: list[float]
    cpu: list[float]


def timed(batch: Batch) -> tuple[float, float]:
    """Run ``batch`` once; its (wall, thread CPU) seconds."""
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    batch()
    return time.perf_counter() - wall0, time.thread_time() - cpu0


def interleave(
    batches: Mapping[str, Batch],
    rounds: int,
    *,
    label: str = "",
) -> dict[str, Timings]:
    """Run every batch once per round, rotating the order each round. Returns the wall and CPU
    seconds per batch name, round by round."""
    names = list(batches)
    results: dict[str, Timings] = {name: Timings([], []) for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        if round_index % 2:
            order.reverse()
        for name in order:
            wall, cpu = timed(batches[name])
            results[name].wall.append(wall)
            results[name].cpu.append(cpu)
        progress(f"{label} round {round_index + 1}/{rounds}")
    return results


def ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Round-by-round ratios of ``values`` to ``baseline`` measured in the same rounds."""
    return [value / base for value, base in zip(values, baseline, strict=True) if base > 0]


_START = time.monotonic()


def progress(message: str) -> None:
    """One line of progress on stderr, with the seconds since the run started."""
    print(f"[{time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)
