"""The three run modes: how many requests, rounds and seconds each measurement gets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """Sizes of one run. ``smoke`` only checks that the harness works; ``quick`` and ``full``
    produce numbers (``full`` with more repetitions and longer load runs).

    The crash soak runs each scenario until it served ``soak_requests`` requests (at sample
    rate 1.0: profiled them), and for at least ``soak_min_seconds`` (so that yappi's windows, 2 s
    every 40 s at the default rate, open a few times), but never longer than ``soak_seconds``."""

    name: str
    inproc_rounds: int
    inproc_batch_s: float
    e2e_duration_s: int
    e2e_reps: int
    e2e_shapes: tuple[str, ...]
    e2e_connections: int
    accuracy_requests: int
    datapath_stacks: int
    datapath_endpoints: int
    datapath_pool: int
    datapath_all_exports: bool
    budget_rounds: int
    budget_batch_s: float
    soak_requests: int
    soak_min_seconds: float
    soak_seconds: float


SHAPES: tuple[str, ...] = ("calls", "cjson", "sleep")

MODES: dict[str, Mode] = {
    "smoke": Mode(
        name="smoke",
        inproc_rounds=2,
        inproc_batch_s=0.01,
        e2e_duration_s=1,
        e2e_reps=1,
        e2e_shapes=("calls",),
        e2e_connections=4,
        accuracy_requests=60,
        datapath_stacks=2_000,
        datapath_endpoints=5,
        datapath_pool=50,
        datapath_all_exports=True,
        budget_rounds=2,
        budget_batch_s=0.02,
        soak_requests=300,
        soak_min_seconds=0.0,
        soak_seconds=30.0,
    ),
    "quick": Mode(
        name="quick",
        inproc_rounds=5,
        inproc_batch_s=0.12,
        e2e_duration_s=3,
        e2e_reps=1,
        e2e_shapes=SHAPES,
        e2e_connections=8,
        accuracy_requests=2_000,
        datapath_stacks=1_000_000,
        datapath_endpoints=200,
        datapath_pool=2_000,
        datapath_all_exports=False,
        budget_rounds=7,
        budget_batch_s=0.25,
        soak_requests=5_000,
        soak_min_seconds=0.0,
        soak_seconds=120.0,
    ),
    "full": Mode(
        name="full",
        inproc_rounds=11,
        inproc_batch_s=0.2,
        e2e_duration_s=5,
        e2e_reps=3,
        e2e_shapes=SHAPES,
        e2e_connections=8,
        accuracy_requests=2_000,
        datapath_stacks=1_000_000,
        datapath_endpoints=200,
        datapath_pool=2_000,
        datapath_all_exports=True,
        budget_rounds=15,
        budget_batch_s=0.5,
        soak_requests=100_000,
        soak_min_seconds=120.0,
        soak_seconds=1_800.0,
    ),
}
