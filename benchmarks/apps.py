"""The applications under test: three endpoint shapes and an app that knows its own CPU split.

Plain WSGI (no framework), so the numbers show wsgiprof's cost and not a framework's:

* ``/calls``: many small Python calls (recursion and tiny helpers), about 1 ms;
* ``/cjson``: C-heavy work, ``json.dumps`` of a big dict and a regex over text, about 1 ms;
* ``/sleep``: mostly waiting, ``time.sleep(0.002)``.
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

SHAPE_PATHS: dict[str, str] = {"calls": "/calls", "cjson": "/cjson", "sleep": "/sleep"}
SHAPE_TITLES: dict[str, str] = {
    "calls": "many small Python calls",
    "cjson": "C-heavy (json.dumps, regex)",
    "sleep": "mostly waiting (sleep 2 ms)",
}


def _add(a: int, b: int) -> int:
    return a + b


def _fib(n: int) -> int:
    return n if n < 2 else _add(_fib(n - 1), _fib(n - 2))


def call_heavy() -> int:
    """About 1 ms of small Python calls."""
    return _fib(16) + sum(_add(i, 1) for i in range(3000))


_BIG = {
    f"key{i}": {"id": i, "name": f"item {i}", "tags": ["a", "b", "c"], "v": i * 0.5}
    for i in range(200)
}
_TEXT = " ".join(f"user{i}@example.com visited /page/{i} at 12:{i % 60:02d}" for i in range(250))
_EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")


def c_heavy() -> int:
    """About 1 ms in C: JSON encoding and a regex scan."""
    return len(json.dumps(_BIG)) + len(_EMAIL.findall(_TEXT))


def waiting() -> int:
    time.sleep(0.002)
    return 0


_WORK: dict[str, Callable[[], int]] = {"/calls": call_heavy, "/cjson": c_heavy, "/sleep": waiting}


def shapes_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The three shapes behind one WSGI callable, chosen by path."""
    work = _WORK.get(environ.get("PATH_INFO", ""))
    if work is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    body = str(work()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_for(path: str) -> dict[str, object]:
    """A minimal, complete WSGI environ for ``GET path`` (copied for every request)."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _no_op_start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> Callable[[bytes], object]:
    return _no_op_write


def _no_op_write(data: bytes) -> object:
    return None


def call(app: WSGIApplication, environ: dict[str, object]) -> int:
    """Call ``app`` once like a server would: a fresh environ copy, body consumed and closed."""
    body = app(dict(environ), _no_op_start_response)
    size = 0
    try:
        for chunk in body:
            size += len(chunk)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return size


# -- accuracy: an app that measures its own CPU split ----------------------------------------

ACCURACY_FUNCTIONS: tuple[str, ...] = ("acc_loop", "acc_calls", "acc_json", "acc_wait")


def acc_loop(n: int) -> int:
    """Pure-Python loop without calls."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _acc_leaf(x: int) -> int:
    return x ^ 3


def acc_calls(n: int) -> int:
    """Many tiny Python calls."""
    return sum(_acc_leaf(i) for i in range(n))


_ACC_DOC = {f"k{i}": [i, str(i), i * 1.5] for i in range(200)}


def acc_json(n: int) -> int:
    """C work: JSON encoding."""
    return sum(len(json.dumps(_ACC_DOC)) for _ in range(n))


def acc_wait(seconds: float) -> int:
    """A wait: burns (almost) no CPU."""
    time.sleep(seconds)
    return 0


class AccuracyApp:
    """Runs four functions per request with randomly varying sizes, timing each with
    ``time.thread_time()``: ``truth`` holds the CPU seconds each one really used over all
    requests, ``truth_profiled`` over the requests wsgiprof profiled (``wsgiprof.profiled`` in the
    environ), where the profiler's own hook slowed some functions more than others."""

    def __init__(self, seed: int = 7) -> None:
        self.truth: dict[str, float] = dict.fromkeys(ACCURACY_FUNCTIONS, 0.0)
        self.truth_profiled: dict[str, float] = dict.fromkeys(ACCURACY_FUNCTIONS, 0.0)
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            scale = [0.5 + self._random.random() for _ in range(4)]
        clock = time.thread_time
        t0 = clock()
        acc_loop(int(9000 * scale[0]))
        t1 = clock()
        acc_calls(int(5000 * scale[1]))
        t2 = clock()
        acc_json(int(4 * scale[2]))
        t3 = clock()
        acc_wait(0.0005 * scale[3])
        t4 = clock()
        with self._lock:
            for truth in (self.truth, self.truth_profiled):
                truth["acc_loop"] += t1 - t0
                truth["acc_calls"] += t2 - t1
                truth["acc_json"] += t3 - t2
                truth["acc_wait"] += t4 - t3
                if not environ.get("wsgiprof.profiled"):
                    break
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
