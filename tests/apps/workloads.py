"""Workloads the engine tests share: CPU in Python, CPU in C without the GIL, a wait, a streamed
body, served by threads through werkzeug's Client, and a summary of what the profile saw; and the
split app (``tests/apps/split.py``) read through a real server: its settings, the profile's and
the true split, and a clean exit."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from werkzeug.test import Client

from tests.servers import ServerProcess, http_get
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
    """Per endpoint (JSON-ready): measured CPU and wall, requests, CPU and samples of the stacks
    in all and by function, off-CPU wall, and the files of the stacks' frames."""
    out: dict[str, Any] = {}
    for name, profile in middleware.read().endpoints.items():
        functions: dict[str, float] = {}
        function_samples: dict[str, int] = {}
        files: set[str] = set()
        for stack, weight in profile.stacks.items():
            for function in {frame.function for frame in stack}:
                functions[function] = functions.get(function, 0.0) + weight.cpu
                function_samples[function] = function_samples.get(function, 0) + weight.samples
            files.update(frame.file for frame in stack)
        off_cpu = profile.stacks.get((NOT_ON_CPU,))
        out[name] = {
            "cpu": profile.cpu,
            "wall": profile.wall,
            "sampled": profile.sampled,
            "stack_cpu": sum(weight.cpu for weight in profile.stacks.values()),
            "samples": sum(weight.samples for weight in profile.stacks.values()),
            "function_samples": function_samples,
            "off_cpu_wall": off_cpu.wall if off_cpu else None,
            "functions": functions,
            "files": sorted(files),
        }
    return out


# -- the split app through a real server --------------------------------------------------------

SPLIT_APP = "tests.apps.split:app"
SPLIT_TOKEN = "split-token-1234"


def split_env(store: Path, engine: str, **settings: str) -> dict[str, str]:
    """The environment of a server of the split app profiled by ``engine``, flushing to a SQLite
    store at ``store``; ``settings`` adds ``WSGIPROF_<NAME>`` variables."""
    return {
        "WSGIPROF_ENABLED": "1",
        "WSGIPROF_TOKEN": SPLIT_TOKEN,
        "WSGIPROF_ENGINE": engine,
        "WSGIPROF_STORE": f"sqlite:///{store}",
        "WSGIPROF_FLUSH_INTERVAL": "0.2",
        **{f"WSGIPROF_{name.upper()}": value for name, value in settings.items()},
    }


class SplitReading(NamedTuple):
    """What the summary says of ``GET /split``: CPU of its stacks in ``first`` and in ``second``,
    its requests and its measured CPU (all zero before its first request is in)."""

    first: float
    second: float
    requests: int
    cpu: float


def split_reading(url: str) -> SplitReading:
    """Read ``GET /split`` from the summary of the server at ``url``."""
    status, body = http_get(
        url + "/_wsgiprof/api/summary", {"Authorization": f"Bearer {SPLIT_TOKEN}"}
    )
    assert status == 200, body
    for row in json.loads(body)["endpoints"]:
        if row["name"] == "GET /split":
            totals = {f["name"]: f["total_cpu_seconds"] for f in row["top_functions"]}
            return SplitReading(
                totals.get("first", 0.0),
                totals.get("second", 0.0),
                row["requests"],
                row["cpu_seconds"],
            )
    return SplitReading(0.0, 0.0, 0, 0.0)


def split_truth(url: str) -> dict[str, float]:
    """CPU seconds ``first`` and ``second`` really used in the server at ``url``."""
    status, body = http_get(url + "/truth")
    assert status == 200, body
    truth: dict[str, float] = json.loads(body)
    return truth


def share_of_first(
    first: float, second: float, truth: dict[str, float], samples: float
) -> tuple[float, float, float]:
    """The profile's share of ``first``, the true share, and 4 binomial standard deviations for
    ``samples`` samples in the two."""
    true_share = truth["first"] / (truth["first"] + truth["second"])
    share = first / (first + second)
    bound = 4 * math.sqrt(true_share * (1 - true_share) / samples)
    print(f"first {share:.3f} against {true_share:.3f} (4 sd {bound:.3f})")
    return share, true_share, bound


def stop_cleanly(server: ServerProcess) -> str:
    """Stop ``server``, check that it exited with 0 and no segmentation fault, remove its log and
    return the log's text."""
    server.stop()
    assert server.proc is not None
    logs = server.logs()
    server.log_path.unlink()
    assert server.proc.returncode == 0, logs
    assert "SIGSEGV" not in logs
    assert "Segmentation" not in logs
    return logs
