"""wsgiprof's background threads start with the process's signals blocked (wsgiprof.background)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from wsgiprof.background import SYNCHRONOUS_SIGNALS, start_daemon
from wsgiprof.flusher import Flusher


def blocked_signals(native_id: int) -> set[int]:
    """Signals blocked in a thread of this process, from /proc."""
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            mask = int(line.split()[1], 16)
            return {number for number in range(1, 65) if mask & (1 << (number - 1))}
    raise AssertionError("no SigBlk line")


def test_a_background_thread_blocks_the_servers_signals_not_its_own_faults() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    seen: list[set[int]] = []
    thread = start_daemon(
        lambda: seen.append(blocked_signals(threading.get_native_id())), "wsgiprof-test"
    )
    thread.join(10)
    assert not thread.is_alive()
    mask = seen[0]
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPROF):
        assert number in mask
    assert not mask & {int(number) for number in SYNCHRONOUS_SIGNALS}
    # The starting thread's own mask is as it was.
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_the_flush_thread_is_one_of_them() -> None:
    seen: list[set[int]] = []
    flushed = threading.Event()

    def flush() -> None:
        if not seen:
            seen.append(blocked_signals(threading.get_native_id()))
        flushed.set()

    flusher = Flusher(flush, interval=0.01)
    flusher.ensure_running()
    try:
        assert flushed.wait(10)
    finally:
        flusher.stop()
    assert signal.SIGINT in seen[0]
    assert signal.SIGTERM in seen[0]
