"""An app that knows its own CPU split, profiled by wsgiprof as configured by the environment.

``GET /split`` runs ``first`` (7 ms of the thread's CPU) then ``second`` (3 ms), adding the CPU
each really used (``time.thread_time()``) to this process's totals; ``GET /truth`` answers them
as JSON ``{"pid": ..., "first": ..., "second": ...}``, unprofiled.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from wsgiprof import ProfilerMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_truth = {"first": 0.0, "second": 0.0}
_lock = threading.Lock()


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(i * i for i in range(200))


def first() -> None:
    _burn(0.007)


def second() -> None:
    _burn(0.003)


def truth() -> dict[str, float]:
    """CPU seconds ``first`` and ``second`` really used in this process so far."""
    with _lock:
        return dict(_truth)


def split_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/truth":
        body = json.dumps({"pid": os.getpid(), **truth()}).encode()
    else:
        t0 = time.thread_time()
        first()
        t1 = time.thread_time()
        second()
        t2 = time.thread_time()
        with _lock:
            _truth["first"] += t1 - t0
            _truth["second"] += t2 - t1
        body = b"ok"
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


app = ProfilerMiddleware(split_app, sampler=lambda environ: environ.get("PATH_INFO") != "/truth")
