"""OverheadBudget and Baselines on synthetic numbers (a fake clock, no real timing)."""

from __future__ import annotations

import random
import threading

import pytest

from wsgiprof.budget import FALLBACK_SLOWDOWN, Baselines, OverheadBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def simulate(
    budget: OverheadBudget,
    clock: FakeClock,
    *,
    seconds: float,
    rps: float,
    wall: float,
    cost: float,
    rng: random.Random,
) -> tuple[float, float, float]:
    """Serve ``seconds`` of traffic; return (achieved overhead, max rate seen, last rate)."""
    step = 1.0 / rps
    total_wall = total_cost = 0.0
    max_rate = 0.0
    for _ in range(int(seconds * rps)):
        clock.now += step
        rate = budget.rate()
        max_rate = max(max_rate, rate)
        if rng.random() < rate:
            budget.record(cost, wall + cost)
            total_wall += wall + cost
            total_cost += cost
        else:
            budget.observe(wall)
            total_wall += wall
    return total_cost / total_wall, max_rate, budget.rate()


def test_converges_to_the_budget() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.02, 1.0, clock=clock)
    rng = random.Random(1)
    # a profiled request costs twice its own time: at rate 1 the overhead would be 67%
    simulate(budget, clock, seconds=10, rps=500, wall=0.002, cost=0.004, rng=rng)
    achieved, _, rate = simulate(
        budget, clock, seconds=60, rps=500, wall=0.002, cost=0.004, rng=rng
    )
    assert achieved == pytest.approx(0.02, rel=0.15)
    expected = 0.02 * 0.002 / (0.004 * 0.98)
    assert rate == pytest.approx(expected, rel=0.25)
    assert budget.overhead() == pytest.approx(0.02, rel=0.3)


def test_first_window_stays_near_budget() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.05, 0.5, clock=clock)
    achieved, _, _ = simulate(
        budget, clock, seconds=20, rps=200, wall=0.005, cost=0.01, rng=random.Random(2)
    )
    assert achieved < 0.05 * 1.2


def test_never_above_base_rate() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.02, 0.05, clock=clock)
    # cheap profiling: 5% of requests at 1% extra each is far inside a 2% budget
    _, max_rate, rate = simulate(
        budget, clock, seconds=30, rps=300, wall=0.01, cost=0.0001, rng=random.Random(3)
    )
    assert max_rate <= 0.05
    assert rate == 0.05


def test_recovers_when_cost_drops() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.02, 0.2, clock=clock)
    rng = random.Random(4)
    _, _, low = simulate(budget, clock, seconds=30, rps=500, wall=0.002, cost=0.01, rng=rng)
    assert low < 0.01
    _, _, high = simulate(budget, clock, seconds=40, rps=500, wall=0.002, cost=0.0001, rng=rng)
    assert high == 0.2


def test_keeps_last_cost_when_profiled_requests_leave_the_window() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.02, 1.0, window_s=1.0, clock=clock)
    budget.observe(0.01)
    budget.record(0.01, 0.02)
    low = budget.rate()
    assert low < 1.0
    clock.now += 5.0  # the window empties
    budget.observe(0.01)
    # the burst's debt has left with the window; the known cost ratio (c/u = 1) remains
    assert budget.rate() == pytest.approx(0.02 / 0.98)


def test_negative_costs_are_clamped_in_the_window() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.02, 0.1, clock=clock)
    for _ in range(100):
        budget.observe(0.01)
    budget.record(-0.005, 0.005)  # a profiled request that happened to run faster
    assert budget.rate() == 0.1
    assert budget.overhead() == 0.0


def test_zero_base_rate_stays_zero() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.02, 0.0, clock=clock)
    budget.record(0.001, 0.002)
    budget.observe(0.01)
    assert budget.rate() == 0.0


@pytest.mark.parametrize(
    ("max_overhead", "base_rate"), [(0.0, 0.1), (1.0, 0.1), (0.02, 1.5), (0.02, -0.1)]
)
def test_rejects_bad_settings(max_overhead: float, base_rate: float) -> None:
    with pytest.raises(ValueError, match="must"):
        OverheadBudget(max_overhead, base_rate)


def test_thread_safe_counts() -> None:
    clock = FakeClock()
    budget = OverheadBudget(0.5, 1.0, window_s=1e6, buckets=1, clock=clock)

    def work() -> None:
        for _ in range(5000):
            budget.observe(0.001)
            budget.record(0.0001, 0.0011)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = (4 * 5000 * 0.0001) / (4 * 5000 * (0.001 + 0.0011))
    assert budget.overhead() == pytest.approx(expected, rel=1e-6)


def test_baselines() -> None:
    baselines = Baselines(alpha=0.5, max_keys=1)
    assert baselines.excess("a", 0.3) == pytest.approx(0.3 * (1 - 1 / FALLBACK_SLOWDOWN))
    baselines.update("a", 0.1)
    baselines.update("a", 0.2)
    assert baselines.mean("a") == pytest.approx(0.15)
    assert baselines.excess("a", 0.25) == pytest.approx(0.1)
    assert baselines.excess("a", 0.05) == pytest.approx(-0.1)
    baselines.update("b", 1.0)  # over max_keys: not tracked
    assert baselines.mean("b") is None
