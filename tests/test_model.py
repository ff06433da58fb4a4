"""EndpointProfile: the function totals it keeps equal those recomputed from its stacks."""

from __future__ import annotations

import math
import random

from wsgiprof.model import (
    OUTSIDE_APP,
    SYNTHETIC_FILE,
    EndpointProfile,
    Frame,
    FunctionTotals,
    Stack,
    Weight,
    function_stats,
)

FRAMES = [Frame(f"f{i}", f"/srv/app/m{i % 4}.py", i, off_cpu=i % 9 == 0) for i in range(12)]


def _stack(rng: random.Random) -> Stack:
    if rng.random() < 0.05:
        return (OUTSIDE_APP,)
    return tuple(rng.choice(FRAMES) for _ in range(rng.randint(1, 6)))


def _weights(rng: random.Random, count: int) -> dict[Stack, Weight]:
    return {
        _stack(rng): Weight(rng.randint(1, 4), rng.random() * 0.01, rng.random() * 0.01)
        for _ in range(count)
    }


def _assert_matches(profile: EndpointProfile) -> None:
    kept = profile.tracked_totals()
    assert kept is not None
    fresh = FunctionTotals.from_stacks(profile.stacks)
    for kind in ("cpu", "wall"):
        expected = {s.frame: s for s in function_stats(profile.stacks, kind)}
        got = {s.frame: s for s in kept.stats(kind)}
        assert got.keys() == expected.keys()
        for frame, stats in expected.items():
            assert math.isclose(got[frame].self_seconds, stats.self_seconds, abs_tol=1e-12)
            assert math.isclose(got[frame].total_seconds, stats.total_seconds, abs_tol=1e-12)
    assert kept.self_cpu.keys() == fresh.self_cpu.keys()
    assert kept.off_cpu_wall.keys() == fresh.off_cpu_wall.keys()
    for frame, wall in fresh.off_cpu_wall.items():
        assert math.isclose(kept.off_cpu_wall[frame], wall, abs_tol=1e-12)
    outside = sum(w.cpu for s, w in profile.stacks.items() if s and s[0].file == SYNTHETIC_FILE)
    assert math.isclose(kept.outside_cpu, outside, abs_tol=1e-12)


def test_totals_follow_random_adds_merges_copies_and_overflow() -> None:
    rng = random.Random(20261127)
    overflowed = 0
    for _ in range(40):
        cap = rng.choice((3, 8, 40, 5000))
        profile = EndpointProfile("GET /", stack_cap=cap)
        if rng.random() < 0.5:
            profile.function_totals()
        for _ in range(rng.randint(1, 12)):
            action = rng.random()
            if action < 0.4:
                profile.add_stacks(_weights(rng, rng.randint(0, 6)))
            elif action < 0.8:
                other = EndpointProfile("GET /", stack_cap=rng.choice((3, 8, 5000)))
                other.add_stacks(_weights(rng, rng.randint(0, 10)))
                if rng.random() < 0.5:
                    other.function_totals()
                profile.merge(other)
            else:
                profile = profile.copy()
            profile.function_totals()
            _assert_matches(profile)
        overflowed += profile.overflow_samples > 0
    assert overflowed > 5


def test_merge_does_not_count_twice() -> None:
    leaf = FRAMES[1]
    one = EndpointProfile("GET /")
    one.add_stacks([((FRAMES[0], leaf), Weight(1, 0.002, 0.001))])
    one.function_totals()
    two = one.copy()
    one.merge(two)
    totals = one.function_totals()
    assert totals.self_cpu[leaf] == 0.002
    assert totals.total_cpu[FRAMES[0]] == 0.002
    assert two.function_totals().self_cpu[leaf] == 0.001


def test_totals_count_overflow_where_the_stacks_put_it() -> None:
    profile = EndpointProfile("GET /", stack_cap=1)
    profile.function_totals()
    profile.add_stacks([((FRAMES[0], FRAMES[1]), Weight(1, 0.001, 0.001))])
    profile.add_stacks([((FRAMES[0], FRAMES[2]), Weight(1, 0.004, 0.004))])
    _assert_matches(profile)
    assert FRAMES[2] not in profile.function_totals().total_cpu


def test_stacks_replaced_from_outside_are_not_served_stale_totals() -> None:
    profile = EndpointProfile("GET /")
    profile.add_stacks([((FRAMES[0],), Weight(1, 0.001, 0.001))])
    profile.function_totals()
    profile.stacks = {(FRAMES[1],): Weight(1, 0.003, 0.003)}
    assert profile.tracked_totals() is None
    assert profile.function_totals().self_cpu == {FRAMES[1]: 0.003}
    profile.stacks[(FRAMES[2],)] = Weight(1, 0.005, 0.005)
    assert profile.tracked_totals() is None


def test_copy_is_deep_and_keeps_exact_engine_data() -> None:
    profile = EndpointProfile("GET /", requests=3, sampled=2, cpu=0.5)
    profile.add_stacks([((FRAMES[0],), Weight(1, 0.001, 0.001))])
    profile.latency.add(0.01)
    clone = profile.copy()
    assert clone == profile
    clone.stacks[(FRAMES[0],)].samples = 99
    clone.latency.add(0.02)
    assert profile.stacks[(FRAMES[0],)].samples == 1
    assert profile.latency.total == 1
