"""Which hook-free sampler tells the truth? pyroscope-io's three modes against the app's own split.

``python -m benchmarks.hookfree [--requests N] [--threads T]`` runs, for each mode, a child process
in which T threads serve N requests each. A request runs four functions, each timed with
``time.thread_time()`` (the truth): ``acc_loop`` (a Python loop without calls), ``acc_calls``
(many tiny calls), ``pbkdf2`` (C work that releases the GIL) and ``acc_wait`` (a sleep: no CPU).
Every request runs under a root function of its own, named after the request, so samples are
attributed to requests by a frame rather than by a thread tag. The profile's share of each
function (its samples' CPU over the CPU of the samples in any of the four) is compared with the
truth, in percentage points, and the CPU per request with the same child run without a profiler.

Modes (pyroscope-io 1.4):

* ``pyspy-gil``: py-spy's sampler in-process, ``gil_only=True``, ``oncpu=True``;
* ``pyspy-all``: the same with ``gil_only=False``;
* ``stack``: the stack sampler (``ProfilerImplementation.Stack``), which weights each sample by
  the CPU its thread used since its previous sample (per-thread CPU timers on 3.12+);
* ``py-spy``: py-spy itself, out of process (``py-spy record --format raw``, as in the accuracy
  benchmark), at the same rate, dropping idle threads as it does by default.

pyroscope's samples reach a loopback receiver in the child through its push API.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import importlib
import json
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

from benchmarks.accuracy import PySpy, parse_raw
from benchmarks.apps import acc_calls, acc_loop, acc_wait
from wsgiprof.engines.pushreader import pprof_samples, push_profiles

MODES: tuple[str, ...] = ("none", "pyspy-gil", "pyspy-all", "stack", "py-spy")
FUNCTIONS: tuple[str, ...] = ("acc_loop", "acc_calls", "pbkdf2", "acc_wait")
ROOT_PREFIX = "request_"


# -- the child: a workload under one mode -------------------------------------------------------


def pbkdf2(iterations: int) -> bytes:
    """C work with the GIL released."""
    return hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", iterations)


def _rooted(name: str, function: Callable[[], None]) -> Callable[[], None]:
    qualname: dict[str, Any] = {"co_qualname": name} if sys.version_info >= (3, 11) else {}
    code = function.__code__.replace(co_name=name, **qualname)
    rooted: Callable[[], None] = types.FunctionType(
        code, function.__globals__, name, None, function.__closure__
    )
    return rooted


def _start_receiver(bodies: list[bytes]) -> http.server.ThreadingHTTPServer:
    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def child(mode: str, requests: int, threads: int, rate: int) -> dict[str, Any]:
    """Run the workload under ``mode``; the truth, the profile's shares and CPU per request."""
    bodies: list[bytes] = []
    pyroscope: Any = None
    spy: PySpy | None = PySpy(rate) if mode == "py-spy" else None
    if mode not in ("none", "py-spy"):
        pyroscope = importlib.import_module("pyroscope")

        server = _start_receiver(bodies)
        options: dict[str, Any] = {
            "application_name": "hookfree",
            "server_address": f"http://127.0.0.1:{server.server_port}",
            "upload_interval": 1,
            "sample_rate": rate,
            "oncpu": True,
        }
        if mode == "stack":
            pyroscope.configure_experimental_stack_profiler(adaptive_sampling=False)
            options["cpu_implementation"] = pyroscope.ProfilerImplementation.Stack
        else:
            options["gil_only"] = mode == "pyspy-gil"
        if not pyroscope.configure(**options):
            raise RuntimeError(f"pyroscope.configure refused mode {mode}")
    truth = dict.fromkeys(FUNCTIONS, 0.0)
    lock = threading.Lock()
    cpu_total = [0.0]

    def request() -> None:
        clock = time.thread_time
        t0 = clock()
        acc_loop(9000)
        t1 = clock()
        acc_calls(5000)
        t2 = clock()
        pbkdf2(3000)
        t3 = clock()
        acc_wait(0.001)
        t4 = clock()
        with lock:
            for name, spent in zip(FUNCTIONS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                truth[name] += spent
            cpu_total[0] += t4 - t0

    def worker(index: int) -> None:
        for number in range(requests):
            _rooted(f"{ROOT_PREFIX}{index}_{number}", request)()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    # Each sample as (function names, CPU nanoseconds), whichever sampler took it.
    samples: list[tuple[list[str], int]] = []
    if spy is not None:
        samples = [(names, round(count * 1e9 / rate)) for names, count in parse_raw(spy.stop())]
    if pyroscope is not None:
        time.sleep(2.5)
        pyroscope.shutdown()
        samples = [
            ([frame.name for frame in sample.frames], sample.value)
            for body in bodies
            for raw in push_profiles(body)
            for sample in pprof_samples(raw)
        ]
    measured = dict.fromkeys(FUNCTIONS, 0.0)
    attributed = unattributed = 0
    for names, value in samples:
        if not any(name.startswith(ROOT_PREFIX) for name in names):
            unattributed += value
            continue
        attributed += value
        for name in set(names) & measured.keys():
            measured[name] += value / 1e9
    return {
        "mode": mode,
        "python": sys.version.split()[0],
        "elapsed": elapsed,
        "cpu_per_request": cpu_total[0] / (requests * threads),
        "truth": truth,
        "measured": measured,
        "attributed_cpu": attributed / 1e9,
        "unattributed_cpu": unattributed / 1e9,
    }


# -- the parent: one child per mode, one table ---------------------------------------------------


def _pct(values: dict[str, float]) -> dict[str, float]:
    total = sum(values.values())
    return {name: 100 * value / total if total else float("nan") for name, value in values.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hookfree", description=__doc__)
    parser.add_argument("--requests", type=int, default=150, help="requests per thread")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.requests, args.threads, args.rate)))
        return 0
    results = {}
    for mode in MODES:
        out = subprocess.run(
            [
                *(sys.executable, "-m", "benchmarks.hookfree", "--child", mode),
                *("--requests", str(args.requests), "--threads", str(args.threads)),
                *("--rate", str(args.rate)),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[mode] = json.loads(out.splitlines()[-1])
    base = results["none"]["cpu_per_request"]
    print(
        f"Python {results['none']['python']}, {args.threads} threads x {args.requests} requests,"
        f" {args.rate} Hz"
    )
    header = " ".join(f"{name:>10}" for name in FUNCTIONS)
    print(f"{'mode':<10} {'':<8} {header} {'max err':>8} {'CPU/req':>8} {'lost':>6}")
    for mode, result in results.items():
        truth = _pct(result["truth"])
        print(f"{mode:<10} {'truth':<8} " + " ".join(f"{truth[n]:10.1f}" for n in FUNCTIONS))
        if mode == "none":
            continue
        measured = _pct(result["measured"])
        worst = max(abs(measured[n] - truth[n]) for n in FUNCTIONS)
        total = result["attributed_cpu"] + result["unattributed_cpu"]
        lost = 100 * result["unattributed_cpu"] / total if total else float("nan")
        print(
            f"{'':<10} {'profile':<8} "
            + " ".join(f"{measured[n]:10.1f}" for n in FUNCTIONS)
            + f" {worst:8.1f} {result['cpu_per_request'] / base:7.2f}x {lost:5.1f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
