"""wsgiprof's own background threads, started so that the process's signals never reach them.

A signal sent to a process goes to any one of its threads that does not block it. Servers
expect their own threads to take their signals: uWSGI blocks them in its worker threads and
handles them on its main thread. A wsgiprof thread that did not block them once took a worker's
SIGINT and ran the server's exit handler, which finalised Python from that thread: Python then
waited for the main thread to end, and the worker hung at shutdown. So wsgiprof's threads start
with every asynchronous signal blocked. Signals the CPU itself raises on that thread (a
segmentation fault, say) stay unblocked, so they are reported as usual.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

SYNCHRONOUS_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT")
    if hasattr(signal, name)
)
"""Signals a thread raises itself; blocking them would hide a crash of that thread."""


def start_daemon(target: Callable[..., Any], name: str, **kwargs: Any) -> threading.Thread:
    """Start a daemon thread running ``target(**kwargs)`` with every asynchronous signal blocked
    (see the module docstring); the calling thread's signal mask is unchanged afterwards."""
    thread = threading.Thread(target=target, name=name, kwargs=kwargs, daemon=True)
    blocked = signal.valid_signals() - SYNCHRONOUS_SIGNALS
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread
