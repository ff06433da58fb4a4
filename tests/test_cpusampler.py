"""The C extension that samples a thread's stack on its own CPU clock (``wsgiprof._cpusampler``).

These tests drive it directly: samples only on CPU, the walk up to the marker frame, safe reads of
code objects that are gone, timers deleted at thread exit, after fork and at shutdown, and a stray
``SIGPROF`` that is not its own.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers import run_forked
from wsgiprof import _cpusampler

INTERVAL_NS = 1_000_000
FOUND, TRUNCATED = 1, 2


@pytest.fixture(autouse=True)
def no_timers_left() -> Iterator[None]:
    yield
    _cpusampler.shutdown()
    assert _cpusampler.timers() == 0


def timers_settle_to(count: int) -> int:
    """The number of timers, polled for up to 5 s until it is ``count``: a thread's timer goes
    when its pthread exits, a moment after ``join()`` returns."""
    deadline = time.monotonic() + 5
    while _cpusampler.timers() != count and time.monotonic() < deadline:
        time.sleep(0.01)
    return _cpusampler.timers()


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(i * i for i in range(200))


def root(function: Callable[..., Any], *args: Any) -> Any:
    """Stands for the engine's request frame."""
    return function(*args)


MARKER = id(root.__code__)


def sampled(function: Callable[[], Any]) -> tuple[list[tuple[int, ...]], int]:
    """Run ``function`` under ``root`` with the sampler on; its samples and lost count."""
    _cpusampler.start(INTERVAL_NS, MARKER)
    try:
        root(function)
    finally:
        result = _cpusampler.stop()
    assert result is not None
    return result


def names(sample: tuple[int, ...]) -> list[str]:
    out = []
    for address in sample[3:]:
        info = _cpusampler.code_info(address)
        assert info is not None
        out.append(info[2] or info[1])
    return out


def sampled_until(
    function: Callable[[], Any], enough: Callable[[list[tuple[int, ...]]], bool]
) -> list[tuple[int, ...]]:
    """The samples of ``function`` run under ``root`` again and again until ``enough`` of them.

    A fixed stretch of CPU is not enough: a signal comes only at a scheduler tick that finds the
    thread running, and with every core busy far fewer ticks do (measured: 250 signals for 1.5 s
    of CPU with two busy loops on 2 cores, 3 to 30 with seven). Gives up after 20 s of CPU."""
    collected: list[tuple[int, ...]] = []
    started = time.thread_time()
    while not enough(collected):
        assert time.thread_time() - started < 20, f"not enough samples: {len(collected)}"
        collected.extend(sampled(function)[0])
    return collected


def signals(samples: list[tuple[int, ...]]) -> int:
    return sum(sample[0] for sample in samples)


def test_cpu_is_sampled_up_to_the_marker_frame_leaf_first() -> None:
    samples = sampled_until(lambda: burn(0.05), lambda got: signals(got) >= 50)
    # A signal carries one or more timer expirations.
    assert all(0 < sample[0] <= sample[1] for sample in samples)
    # A tick that lands while a generator is entered or left can find the frame chain cut at
    # the generator's frame (CPython links it a few instructions apart): rare (1 signal in
    # 1,000 measured), and such a sample lacks the marker.
    cut = [sample for sample in samples if sample[2] != FOUND]
    assert signals(cut) <= 0.05 * signals(samples)
    assert all(sample[2] == 0 and "genexpr" in names(sample)[-1] for sample in cut)
    # (A tick in the marker's own code gives an empty stack.)
    stacks = {tuple(names(s)) for s in samples if s[2] == FOUND and len(s) > 3}
    for stack in stacks:
        assert "burn" in stack
        # Nothing below the marker: the test function and pytest are not in the stack.
        assert "test_cpu_is_sampled_up_to_the_marker_frame_leaf_first" not in stack
        assert stack[-1].endswith("<lambda>")


def test_the_same_stack_is_stored_once_with_its_expirations() -> None:
    samples, _ = sampled(lambda: burn(0.1))
    keys = [sample[2:] for sample in samples]
    assert len(keys) == len(set(keys))


def test_sleeping_takes_no_sample_and_gil_free_c_work_does() -> None:
    samples, _ = sampled(lambda: time.sleep(0.2))
    assert signals(samples) <= 2
    samples = sampled_until(
        lambda: hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 50_000),
        lambda got: signals(got) >= 5,
    )
    # pbkdf2 has no Python frame: the samples are the lambda's, which called it (or empty: a
    # tick in the marker's own code).
    assert all(names(sample)[0].endswith("<lambda>") for sample in samples if len(sample) > 3)


def test_samples_outside_the_marker_are_flagged() -> None:
    samples: list[tuple[int, ...]] = []
    started = time.thread_time()
    while not samples:
        assert time.thread_time() - started < 20
        _cpusampler.start(INTERVAL_NS, MARKER)
        try:
            burn(0.05)
        finally:
            result = _cpusampler.stop()
        assert result is not None
        samples = result[0]
    assert all(sample[2] & FOUND == 0 for sample in samples)


def in_burn(sample: tuple[int, ...]) -> bool:
    return len(sample) > 3 and names(sample)[0] in ("burn", "<genexpr>", "burn.<locals>.<genexpr>")


def test_a_stack_deeper_than_512_frames_keeps_its_leaf_and_is_flagged() -> None:
    def deep(level: int) -> None:
        if level:
            deep(level - 1)
        else:
            burn(0.05)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 2000))
    try:
        # A tick may land on the way down; those taken in `burn`, 701 frames deep, are cut.
        # (A sample whose chain was cut at a generator, see above, has flags 0: left out.)
        samples = sampled_until(
            lambda: deep(700), lambda got: any(in_burn(s) and s[2] for s in got)
        )
    finally:
        sys.setrecursionlimit(limit)
    for sample in (s for s in samples if in_burn(s) and s[2]):
        assert sample[2] == FOUND | TRUNCATED
        assert len(sample) - 3 == 512


def test_stop_without_start_and_a_second_stop_return_none() -> None:
    assert _cpusampler.stop() is None
    sampled(lambda: None)
    assert _cpusampler.stop() is None


def test_start_again_drops_the_samples_of_a_profile_never_stopped() -> None:
    _cpusampler.start(INTERVAL_NS, MARKER)
    root(burn, 0.05)
    samples, _ = sampled(lambda: None)
    assert not any("burn" in names(sample) for sample in samples)


def test_code_info_names_a_live_code_object() -> None:
    info = _cpusampler.code_info(id(burn.__code__))
    assert info is not None
    file, name, qualname, first_line = info
    assert file == burn.__code__.co_filename
    assert name == "burn"
    assert qualname == ("burn" if sys.version_info >= (3, 11) else None)
    assert first_line == burn.__code__.co_firstlineno
    assert _cpusampler.code_key(id(burn.__code__)) == _cpusampler.code_key(id(burn.__code__))


def test_code_info_of_anything_else_is_none_and_never_crashes() -> None:
    assert _cpusampler.code_info(0) is None
    assert _cpusampler.code_info(8) is None
    assert _cpusampler.code_info(id(12345678901)) is None
    assert _cpusampler.code_key(2**47 - 4096) is None
    # A code object that has been freed: its memory may hold anything now.
    namespace: dict[str, Any] = {}
    exec(compile("def gone():\n    return 1\n", "<gone>", "exec"), namespace)
    address = id(namespace["gone"].__code__)
    namespace.clear()
    gc.collect()
    for _ in range(1000):
        compile("x = 1", "<filler>", "exec")
    info = _cpusampler.code_info(address)
    assert info is None or isinstance(info[0], str)


def test_non_ascii_names_are_read() -> None:
    namespace: dict[str, Any] = {}
    exec(compile("def café_ünïcode_名前():\n    return 1\n", "<ü>", "exec"), namespace)
    info = _cpusampler.code_info(id(namespace["café_ünïcode_名前"].__code__))
    assert info is not None
    assert info[0] == "<ü>"
    assert info[1] == "café_ünïcode_名前"


def test_a_thread_that_exits_deletes_its_timer() -> None:
    counts: list[int] = []

    def work() -> None:
        sampled(lambda: burn(0.01))
        counts.append(_cpusampler.timers())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert counts == [1]
    assert timers_settle_to(0) == 0


def test_many_threads_in_turn_reuse_states() -> None:
    def work() -> None:
        sampled(lambda: burn(0.002))

    for _ in range(50):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert timers_settle_to(0) == 0


def test_a_forked_child_samples_with_timers_of_its_own() -> None:
    sampled(lambda: burn(0.01))
    assert _cpusampler.timers() == 1

    def child() -> bytes:
        inherited = _cpusampler.timers()
        samples = sampled_until(lambda: burn(0.05), lambda got: signals(got) >= 1)
        burned = any("burn" in names(sample) for sample in samples)
        return json.dumps([inherited, burned, _cpusampler.timers()]).encode()

    code, output = run_forked(child, timeout=60)
    assert code == 0, output.decode(errors="replace")
    inherited, burned, timers = json.loads(output)
    assert inherited == 0
    assert burned
    assert timers == 1


def test_a_stray_sigprof_is_not_a_sample_and_does_not_kill() -> None:
    _cpusampler.start(INTERVAL_NS, MARKER)
    try:
        for _ in range(20):
            signal.pthread_kill(threading.get_ident(), signal.SIGPROF)
    finally:
        result = _cpusampler.stop()
    assert result is not None
    assert signals(result[0]) <= 2
    os.kill(os.getpid(), signal.SIGPROF)


def test_the_interval_is_checked() -> None:
    with pytest.raises(ValueError, match="interval"):
        _cpusampler.start(10, MARKER)
    with pytest.raises(TypeError):
        _cpusampler.start("1", MARKER)  # type: ignore[arg-type]
