"""The pyinstrument engine: CPU weights that tell the truth, on one thread and under contention."""

from __future__ import annotations

import cProfile
import gc
import hashlib
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pyinstrument import Profiler
from pyinstrument.stack_sampler import get_stack_sampler

from tests.servers import unavailable
from wsgiprof.engines.base import Capture, EngineUnavailableError
from wsgiprof.engines.pyinstrument import MIN_INTERVAL_FRACTION, PyinstrumentEngine
from wsgiprof.model import OUTSIDE_APP, UNSAMPLED, Stack, Weight


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


def share_tolerance(share: float, samples: int) -> float:
    """Four standard deviations of a CPU share estimated from ``samples`` stack samples, as for
    a binomial proportion (with a floor for shares near 0 or 1)."""
    return 4 * math.sqrt(max(share * (1 - share), 0.02) / samples)


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
    assert roots <= {"<lambda>", "heavy", OUTSIDE_APP.function, UNSAMPLED.function}
    assert all(frame.function != "profile" for stack in capture.stacks for frame in stack)


def test_split_between_two_functions_is_recovered_under_gil_contention(
    engine: PyinstrumentEngine,
) -> None:
    truth = {"heavy": 0.0, "light": 0.0}
    measured = {"heavy": 0.0, "light": 0.0, "other": 0.0}
    samples = [0]
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
                samples[0] += sum(w.samples for w in capture.stacks.values())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(measured.values())
    for name in ("heavy", "light"):
        share = truth[name] / total
        tolerance = share_tolerance(share, samples[0])
        assert measured[name] / total == pytest.approx(share, abs=tolerance)


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


def test_stacks_of_short_lived_threads_share_one_cache_entry(engine: PyinstrumentEngine) -> None:
    """pyinstrument's call stacks start with the thread's name and id; a server that starts a
    thread per request (werkzeug's threaded server) must not grow the stack cache per request."""
    entry = ("app.py", 1, 3)
    first = engine.to_stack(["Thread-1\x00<thread>\x001", "handler\x00app.py\x0010"], entry)
    second = engine.to_stack(["Thread-2\x00<thread>\x002", "handler\x00app.py\x0010"], entry)
    assert first is second


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


def test_stop_on_another_thread_returns_nothing_and_the_next_start_releases_the_hook(
    engine: PyinstrumentEngine,
) -> None:
    active = engine.start()
    results: list[Capture | None] = []
    stopper = threading.Thread(target=lambda: results.append(active.stop()))
    stopper.start()
    stopper.join()
    assert results == [None]
    heavy(10)  # samples of the stopped profile are ignored; its hook stays until a safe point
    assert len(get_stack_sampler().subscribers) == 1
    profile(engine, lambda: heavy(10))
    assert get_stack_sampler().subscribers == []
    assert sys.getprofile() is None


def test_stop_inside_a_gc_pass_keeps_the_hook_until_the_next_start(
    engine: PyinstrumentEngine,
) -> None:
    """A finalizer run by the garbage collector may end a profile (a response body dropped in a
    reference cycle); removing pyinstrument's hook there can free it under CPython 3.11's hook."""
    active = engine.start()
    captures: list[Capture | None] = []

    class Body:
        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            captures.append(active.stop())

    Body()
    gc.collect()
    assert len(captures) == 1
    assert captures[0] is not None, "the data of a profile stopped in a GC pass is kept"
    assert len(get_stack_sampler().subscribers) == 1
    profile(engine, lambda: heavy(5))
    assert get_stack_sampler().subscribers == []


CRASH_CHILD = """
import gc, sys, time
from wsgiprof.engines.pyinstrument import MIN_INTERVAL_FRACTION, PyinstrumentEngine

INTERVAL = 0.02
collections_in_victim = []

class Node:
    def __init__(self):
        self.cycle = self
    def __del__(self):
        helper()

def helper():
    return 1

def victim():
    return 2

def watch(phase, info):
    if phase == "start":
        collections_in_victim.append(sys._getframe(1).f_code.co_name == "victim")

started = time.perf_counter()
for _ in range(200_000):
    pass
per_loop = (time.perf_counter() - started) / 200_000
loops = int(3 * INTERVAL / per_loop)
engine = PyinstrumentEngine(interval=INTERVAL)
sampled_there = 0
for attempt in range(20):
    gc.disable()
    garbage = [Node() for _ in range(50)]
    del garbage
    active = engine.start()
    gc.callbacks.append(watch)
    gc.set_threshold(1)
    gc.enable()
    for _ in range(loops):
        pass  # no call, no allocation: a sample falls due in here
    victim()  # the hook allocates its frame object, which runs a GC pass: finalizers, profiled
    gc.set_threshold(700, 10, 10)
    gc.callbacks.remove(watch)
    capture = active.stop()
    sampled_there += any(stack == ("victim",) for stack in {
        tuple(f.function for f in s) for s in capture.stacks
    })
engine.close()
print(sum(collections_in_victim), sampled_there)
"""


def test_a_sample_inside_a_gc_pass_of_a_frame_allocation_does_not_crash() -> None:
    """The crash found on CPython 3.11: the profile hook allocates a frame object, the allocation
    runs a GC pass, a finalizer's call is the first sample due (its stack ends at ``victim``), and
    a profiler changed from that callback is freed under the hook. ``PYTHONMALLOC=debug`` turns
    such a use-after-free into a crash at once; the engine before the fix died here every time on
    3.11. On 3.10 and 3.12+ the hooks differ, and the child must pass there too."""
    result = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", CRASH_CHILD],
        env={**os.environ, "PYTHONMALLOC": "debug"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"child died ({result.returncode}):\n{result.stderr[-3000:]}"
    in_victim, sampled = map(int, result.stdout.split())
    if sys.version_info[:2] == (3, 11):
        assert in_victim >= 20, "the GC pass ran inside the hook's frame allocation"
        assert sampled >= 10, "a sample fell there"


def test_stop_twice_is_harmless(engine: PyinstrumentEngine) -> None:
    active = engine.start()
    assert active.stop() is not None
    assert active.stop() is None


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def validate_order() -> float:
    start = time.thread_time()
    fib(21)
    return time.thread_time() - start


def price_order() -> float:
    start = time.thread_time()
    fib(20)
    return time.thread_time() - start


def test_wait_inside_psycopg2_is_not_charged_as_cpu(postgres_dsn: str) -> None:
    """psycopg2 blocks in ``cursor.execute`` without any frame of its own, so pyinstrument's wall
    samples charge the round trip to the line that called it. Its CPU weight must stay small."""
    try:
        import psycopg2
    except ImportError:
        unavailable("psycopg2 is not installed (the tests dependency group)")
    engine = PyinstrumentEngine(interval=0.001)
    truth = {"validate_order": 0.0, "price_order": 0.0, "load_customer": 0.0}
    measured = {"validate_order": 0.0, "price_order": 0.0, "load_customer": 0.0, "other": 0.0}
    walls = {"load_customer": 0.0, "all": 0.0, "samples": 0.0}
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
                    walls["samples"] += sum(w.samples for w in capture.stacks.values())
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
    samples = int(walls["samples"])
    wait_share = measured["load_customer"] / total
    print(
        f"psycopg2 wait: {wait_share:.1%} of CPU (truth {truth['load_customer'] / total:.1%}), "
        f"{walls['load_customer'] / walls['all']:.1%} "
        f"of wall; validate {measured['validate_order'] / total:.1%} "
        f"(truth {truth['validate_order'] / total:.1%}), price "
        f"{measured['price_order'] / total:.1%} (truth {truth['price_order'] / total:.1%})"
    )
    wall_share = walls["load_customer"] / walls["all"]
    assert wall_share > max(0.15, 3 * truth["load_customer"] / total), "a wait, in wall time"
    # The few hundred microseconds of CPU psycopg2 itself uses inside the call (sending and
    # receiving) can move to the code before it: at most the call's own true share.
    moved = truth["load_customer"] / total
    for name in ("load_customer", "validate_order", "price_order"):
        share = truth[name] / total
        tolerance = share_tolerance(share, samples) + moved
        assert measured[name] / total == pytest.approx(share, abs=tolerance)


def tiny() -> int:
    return 1


def short_request(seconds: float) -> float:
    """Calls (so the profiler has events to sample at) for ``seconds`` of wall time; returns the
    time of the last reading, just before the last event."""
    deadline = time.perf_counter() + seconds
    now = time.perf_counter()
    while now < deadline:
        tiny()
        now = time.perf_counter()
    return now


def test_requests_shorter_than_the_interval_are_sampled_in_proportion() -> None:
    """Each request draws its interval uniformly between a tenth of the engine's interval and
    the interval, so a request whose events span d seconds after the start gets a sample with
    probability (d - I/10) / (0.9 I): a request a third of the interval long, about a quarter of
    the time (never, with the interval fixed at start). d is measured from just before start()
    to the request's last event, so that time lost to preemption after it does not count.
    Expected count and bound from the binomial distribution of the requests' probabilities; a
    request counts as sampled with any sample at all (one falling in start() is outside the
    application, and still a sample)."""
    engine = PyinstrumentEngine(interval=0.003)
    low = MIN_INTERVAL_FRACTION * engine.interval
    sampled = 0
    expected = 0.0
    variance = 0.0
    try:
        for _ in range(600):
            started = time.perf_counter()
            active = engine.start()
            last = short_request(engine.interval / 3)
            capture = active.stop()
            assert capture is not None
            p = min(max((last - started - low) / (engine.interval - low), 0.0), 1.0)
            expected += p
            variance += p * (1 - p)
            sampled += sum(weight.samples for weight in capture.stacks.values()) > 0
    finally:
        engine.close()
    print(f"{sampled} of 600 requests sampled, {expected:.0f} expected")
    # Five binomial standard deviations, plus a tenth: with every core busy, preemption between
    # start() and the first event of the request lowered the rate by 5-10% (measured).
    assert abs(sampled - expected) < 5 * math.sqrt(variance) + 0.1 * expected


def test_a_request_shorter_than_a_tenth_of_the_interval_is_too_short_to_sample() -> None:
    engine = PyinstrumentEngine(interval=1.0)
    try:
        capture = profile(engine, lambda: heavy(2))
    finally:
        engine.close()
    assert list(capture.stacks) == [(UNSAMPLED,)]
    assert capture.stacks[(UNSAMPLED,)].cpu == pytest.approx(capture.cpu)


FORK_CHILD = """
import os, sys, time
from wsgiprof.engines.pyinstrument import MIN_INTERVAL_FRACTION, PyinstrumentEngine

def burn():
    deadline = time.thread_time() + 0.03
    while time.thread_time() < deadline:
        pass

def samples(engine):
    active = engine.start()
    burn()
    return sum(w.samples for w in active.stop().stacks.values())

engine = PyinstrumentEngine(interval=0.001)
print("parent", samples(engine), flush=True)
pid = os.fork()
if pid == 0:
    print("child", samples(engine), flush=True)
    engine.close()
    os._exit(0)
_, status = os.waitpid(pid, 0)
engine.close()
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_samples_every_interval() -> None:
    """An engine built and used before a fork (a pre-forking server that imported the app)
    profiles in the child as in the parent."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(line.split() for line in result.stdout.splitlines())
    assert int(counts["parent"]) >= 5
    assert int(counts["child"]) >= 5
