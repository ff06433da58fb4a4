"""A background thread that flushes a worker's deltas to a shared store every few seconds.

It starts on the first request a process serves, never at import or construction, so a pre-fork
master (gunicorn ``--preload``, uWSGI without ``lazy-apps``) never owns a thread that its children
would inherit dead. After a fork the child builds a new, stopped flusher.

Time comes from two injectable functions, so tests drive it instead of sleeping: ``clock`` (the
monotonic clock behind :meth:`Flusher.overdue`) and ``wait`` (how the thread waits one interval;
``wait(stopping, seconds)`` returns true once ``stopping`` is set, like
:meth:`threading.Event.wait`).

Example::

    flusher = Flusher(middleware.flush, interval=1.0)
    flusher.ensure_running()      # cheap when already running
    ...
    flusher.stop()                # flushes one last time
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from wsgiprof.background import start_daemon

logger = logging.getLogger("wsgiprof")

#: ``wait(stopping, seconds)``: block up to ``seconds`` or until ``stopping`` is set; return
#: whether it is set (the flusher then ends).
Wait = Callable[[threading.Event, float], bool]


def wait_on_event(stopping: threading.Event, seconds: float) -> bool:
    """The real :data:`Wait`: :meth:`threading.Event.wait`, woken early by :meth:`Flusher.stop`."""
    return stopping.wait(seconds)


class Flusher:
    """Calls ``flush`` every ``interval`` seconds from a daemon thread named ``wsgiprof-flush``.

    :param clock: monotonic seconds, for :meth:`overdue` (tests pass a fake one).
    :param wait: how the thread waits between flushes (see :data:`Wait`; tests pass one they
        release step by step).
    """

    def __init__(
        self,
        flush: Callable[[], None],
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        wait: Wait = wait_on_event,
    ) -> None:
        self._flush = flush
        self.interval = interval
        self._clock = clock
        self._wait = wait
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_flush = clock()
        self.failures = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def ensure_running(self) -> None:
        """Start the thread unless it runs already."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = start_daemon(self._run, "wsgiprof-flush")

    def flush_now(self) -> None:
        """Flush from the calling thread; never raises."""
        try:
            self._flush()
        except Exception:
            self.failures += 1
            if self.failures == 1:
                logger.warning("flushing profiles to the store failed", exc_info=True)
        finally:
            self.last_flush = self._clock()

    def overdue(self) -> bool:
        """True when no flush happened for two intervals (the thread cannot run, as in a uWSGI
        worker started without ``--enable-threads``)."""
        return self._clock() - self.last_flush > 2 * self.interval

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and flush what is left."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        self.flush_now()

    def _run(self) -> None:
        while not self._wait(self._stopping, self.interval):
            self.flush_now()
