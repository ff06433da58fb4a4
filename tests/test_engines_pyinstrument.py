"""The pyinstrument engine: CPU weights that tell the truth, on one thread and under contention."""

from __future__ import annotations

import cProfile
import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pyinstrument import Profiler
from pyinstrument.stack_sampler import get_stack_sampler

from wsgiprof.engines.base import Capture, EngineUnavailableError
from wsgiprof.engines.pyinstrument import PyinstrumentEngine
from wsgiprof.model import OUTSIDE_APP, Stack, Weight


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def heavy(units: int = 70) -> float:
    start = time.thread_time()
    for _ in range(units):
        burn(1000)
    return time.thread_time() - start


def light(units: int = 30) -> float:
    start = time.thread_time()
    for _ in range(units):
        burn(1000)
    return time.thread_time() - start


def tight_loop() -> int:
    total = 0
    for i in range(300_000):
        total += i
    return total


def wait_for_upstream() -> None:
    time.sleep(0.02)


def work_then_wait(units: int = 5) -> None:
    heavy(units)
    wait_for_upstream()


def hash_password() -> bytes:
    return hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 30_000)


def profile(engine: PyinstrumentEngine, work: Callable[[], object]) -> Capture:
    active = engine.start()
    try:
        work()
    finally:
        capture = active.stop()
    assert capture is not None
    return capture


def cpu_by_function(stacks: dict[Stack, Weight], names: set[str]) -> dict[str, float]:
    """CPU per named function (innermost named frame of each stack), plus ``other``."""
    result = dict.fromkeys([*names, "other"], 0.0)
    for stack, weight in stacks.items():
        name = next((f.function for f in reversed(stack) if f.function in names), "other")
        result[name] += weight.cpu
    return result


@pytest.fixture
def engine() -> Iterator[PyinstrumentEngine]:
    engine = PyinstrumentEngine(interval=0.001)
    yield engine
    engine.close()


def test_cpu_weights_add_up_to_measured_thread_cpu(engine: PyinstrumentEngine) -> None:
    capture = profile(engine, lambda: work_then_wait(20))
    assert sum(w.cpu for w in capture.stacks.values()) == pytest.approx(capture.cpu, abs=1e-9)
    assert sum(w.wall for w in capture.stacks.values()) == pytest.approx(capture.wall, rel=0.02)


def test_stacks_start_below_the_function_that_started_the_profile(
    engine: PyinstrumentEngine,
) -> None:
    capture = profile(engine, lambda: heavy(20))
    roots = {stack[0].function for stack in capture.stacks}
    assert roots <= {"<lambda>", "heavy", OUTSIDE_APP.function}
    assert all(frame.function != "profile" for stack in capture.stacks for frame in stack)


def test_split_between_two_functions_is_recovered_under_gil_contention(
    engine: PyinstrumentEngine,
) -> None:
    truth = {"heavy": 0.0, "light": 0.0}
    measured = {"heavy": 0.0, "light": 0.0, "other": 0.0}
    lock = threading.Lock()

    def handler() -> tuple[float, float]:
        spent_heavy = heavy()
        wait_for_upstream()
        return spent_heavy, light()

    def worker() -> None:
        for _ in range(15):
            active = engine.start()
            spent_heavy, spent_light = handler()
            capture = active.stop()
            assert capture is not None
            with lock:
                truth["heavy"] += spent_heavy
                truth["light"] += spent_light
                for name, cpu in cpu_by_function(capture.stacks, {"heavy", "light"}).items():
                    measured[name] += cpu

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(measured.values())
    for name in ("heavy", "light"):
        assert measured[name] / total == pytest.approx(truth[name] / total, abs=0.05)


def test_a_wait_is_off_cpu_and_gets_almost_no_cpu(engine: PyinstrumentEngine) -> None:
    capture = profile(engine, work_then_wait)
    sleeps = {s: w for s, w in capture.stacks.items() if s[-1].function == "sleep"}
    assert sleeps, "the sleep leaf is kept, not dropped"
    assert all(stack[-1].off_cpu for stack in sleeps)
    assert sum(w.wall for w in sleeps.values()) >= 0.019
    assert sum(w.cpu for w in sleeps.values()) < 0.001
    assert capture.cpu / capture.wall < 0.5


def test_gil_releasing_c_hash_stays_on_cpu(engine: PyinstrumentEngine) -> None:
    capture = profile(engine, hash_password)
    hashes = {s: w for s, w in capture.stacks.items() if s[-1].function == "pbkdf2_hmac"}
    assert hashes
    assert not any(stack[-1].off_cpu for stack in hashes)
    assert sum(w.cpu for w in hashes.values()) >= 0.8 * capture.cpu


def test_tight_loop_without_calls_gets_its_cpu(engine: PyinstrumentEngine) -> None:
    capture = profile(engine, tight_loop)
    share = cpu_by_function(capture.stacks, {"tight_loop"})["tight_loop"] / capture.cpu
    assert share > 0.9


def test_extra_off_cpu_names_mark_leaves() -> None:
    engine = PyinstrumentEngine(off_cpu_functions={"wait_for_upstream"})
    capture = profile(engine, work_then_wait)
    leaves = {stack[-1] for stack in capture.stacks}
    assert any(leaf.function == "sleep" and leaf.off_cpu for leaf in leaves)


def test_second_profile_on_the_same_thread_is_refused(engine: PyinstrumentEngine) -> None:
    active = engine.start()
    try:
        with pytest.raises(EngineUnavailableError):
            engine.start()
    finally:
        active.stop()


def test_start_is_refused_while_cprofile_runs(engine: PyinstrumentEngine) -> None:
    other = cProfile.Profile()
    other.enable()
    try:
        with pytest.raises(EngineUnavailableError):
            engine.start()
    finally:
        other.disable()


def test_start_is_refused_while_a_user_pyinstrument_profiler_runs(
    engine: PyinstrumentEngine,
) -> None:
    with Profiler(async_mode="disabled"), pytest.raises(EngineUnavailableError):
        engine.start()


def test_stop_on_another_thread_returns_nothing_and_releases_the_hook(
    engine: PyinstrumentEngine,
) -> None:
    active = engine.start()
    results: list[Capture | None] = []
    stopper = threading.Thread(target=lambda: results.append(active.stop()))
    stopper.start()
    stopper.join()
    assert results == [None]
    heavy(10)  # the next sample on this thread removes the hook
    assert get_stack_sampler().subscribers == []


def test_stop_twice_is_harmless(engine: PyinstrumentEngine) -> None:
    active = engine.start()
    assert active.stop() is not None
    assert active.stop() is None


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def validate_order() -> float:
    start = time.thread_time()
    fib(18)
    return time.thread_time() - start


def price_order() -> float:
    start = time.thread_time()
    fib(17)
    return time.thread_time() - start


def test_wait_inside_psycopg2_is_not_charged_as_cpu(postgres_dsn: str) -> None:
    """psycopg2 blocks in ``cursor.execute`` without any frame of its own, so pyinstrument's wall
    samples charge the round trip to the line that called it. Its CPU weight must stay small."""
    psycopg2 = pytest.importorskip("psycopg2")
    engine = PyinstrumentEngine(interval=0.001)
    truth = {"validate_order": 0.0, "price_order": 0.0, "load_customer": 0.0}
    measured = {"validate_order": 0.0, "price_order": 0.0, "load_customer": 0.0, "other": 0.0}
    walls = {"load_customer": 0.0, "all": 0.0}
    lock = threading.Lock()

    def worker() -> None:
        connection = psycopg2.connect(postgres_dsn)
        cursor = connection.cursor()

        def load_customer() -> None:
            cursor.execute("SELECT pg_sleep(0.02)")
            cursor.fetchall()

        try:
            for _ in range(12):
                active = engine.start()
                spent_validate = validate_order()
                before = time.thread_time()
                load_customer()
                spent_load = time.thread_time() - before
                spent_price = price_order()
                capture = active.stop()
                assert capture is not None
                with lock:
                    truth["validate_order"] += spent_validate
                    truth["price_order"] += spent_price
                    truth["load_customer"] += spent_load
                    names = set(measured) - {"other"}
                    for name, cpu in cpu_by_function(capture.stacks, names).items():
                        measured[name] += cpu
                    walls["all"] += capture.wall
                    walls["load_customer"] += sum(
                        w.wall
                        for s, w in capture.stacks.items()
                        if any(f.function == "load_customer" for f in s)
                    )
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(measured.values())
    wait_share = measured["load_customer"] / total
    print(
        f"psycopg2 wait: {wait_share:.1%} of CPU (truth {truth['load_customer'] / total:.1%}), "
        f"{walls['load_customer'] / walls['all']:.1%} "
        f"of wall; validate {measured['validate_order'] / total:.1%} "
        f"(truth {truth['validate_order'] / total:.1%}), price "
        f"{measured['price_order'] / total:.1%} (truth {truth['price_order'] / total:.1%})"
    )
    assert walls["load_customer"] / walls["all"] > 0.3, "the wait dominates wall time"
    assert wait_share == pytest.approx(truth["load_customer"] / total, abs=0.03)
    for name in ("validate_order", "price_order"):
        assert measured[name] / total == pytest.approx(truth[name] / total, abs=0.05)
