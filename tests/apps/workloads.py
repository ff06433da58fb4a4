"""Workloads the engine tests share: CPU in Python, CPU in C without the GIL, a wait, a streamed
body, served by threads through werkzeug's Client, and a summary of what the profile saw."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.test import Client

from wsgiprof import ProfilerMiddleware
from wsgiprof.model import NOT_ON_CPU

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def burn(seconds: float) -> None:
    """Pure Python work for ``seconds`` of this thread's CPU."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(i * i for i in range(200))


def hash_it(rounds: int) -> bytes:
    """C work with the GIL released."""
    return hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", rounds)


def endpoints_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``/burn``: 3 ms of Python CPU; ``/hash``: pbkdf2; ``/wait``: a 10 ms sleep."""
    path = environ["PATH_INFO"]
    if path == "/burn":
        burn(0.003)
    elif path == "/hash":
        hash_it(3000)
    elif path == "/wait":
        time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def streamed_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A body of five chunks, each 4 ms of CPU, computed while the server iterates it."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks() -> Iterable[bytes]:
        for _ in range(5):
            burn(0.004)
            yield b"chunk\n"

    return chunks()


def serve(app: Any, paths: list[str], *, threads: int, rounds: int) -> None:
    """Each of ``threads`` threads requests each path in turn ``rounds`` times."""

    def worker() -> None:
        client = Client(app)
        for _ in range(rounds):
            for path in paths:
                response = client.get(path)
                assert response.status_code == 200
                response.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def summary(middleware: ProfilerMiddleware) -> dict[str, Any]:
    """Per endpoint (JSON-ready): measured CPU and wall, requests, CPU of the stacks in all and
    by function, off-CPU wall, and the files of the stacks' frames."""
    out: dict[str, Any] = {}
    for name, profile in middleware.read().endpoints.items():
        functions: dict[str, float] = {}
        files: set[str] = set()
        for stack, weight in profile.stacks.items():
            for function in {frame.function for frame in stack}:
                functions[function] = functions.get(function, 0.0) + weight.cpu
            files.update(frame.file for frame in stack)
        off_cpu = profile.stacks.get((NOT_ON_CPU,))
        out[name] = {
            "cpu": profile.cpu,
            "wall": profile.wall,
            "sampled": profile.sampled,
            "stack_cpu": sum(weight.cpu for weight in profile.stacks.values()),
            "off_cpu_wall": off_cpu.wall if off_cpu else None,
            "functions": functions,
            "files": sorted(files),
        }
    return out
