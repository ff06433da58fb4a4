"""Throughput and tail latency end to end: gunicorn serving the shapes, wrk generating the load.

Every variant is its own gunicorn (2 workers x 4 gthread threads) on 127.0.0.1, all started
before the first measurement, so the load runs can be interleaved: each repetition runs every
shape against every variant in a rotating order. Load is bounded by wrk's duration and connection
count.

Besides wrk's requests/s and p99, the CPU time the server's processes used during each load run
(psutil, master and workers) divided by the requests served gives the server CPU per request. On a
shared machine requests/s mostly measures how much CPU the neighbours left over; CPU per request
does not, and its inverse is the capacity of a saturated CPU-bound server, so "capacity ratio" =
bare CPU per request / variant CPU per request.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from benchmarks.apps import SHAPE_PATHS
from benchmarks.settings import Mode
from benchmarks.timing import Spread, progress, ratios
from benchmarks.variants import ENDTOEND_VARIANTS

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
THREADS = 4


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu_s: float = float("nan")

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")


@dataclass(frozen=True)
class EndToEndRow:
    shape: str
    variant: str
    rps: Spread
    p99_ms: Spread
    rps_ratio: Spread
    p99_ratio: Spread
    cpu_us_per_request: Spread
    capacity_ratio: Spread
    errors: int


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One gunicorn process group serving one variant on 127.0.0.1."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.port = _free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"wsgiprof-bench-{variant}-", suffix=".log", delete=False
        )
        env = dict(os.environ, BENCH_VARIANT=variant, PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(WORKERS),
                "-k",
                "gthread",
                "--threads",
                str(THREADS),
                "-b",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                "--backlog",
                "256",
                "benchmarks.server_app:app",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
            try:
                conn.request("GET", "/calls")
                conn.getresponse().read()
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
            finally:
                conn.close()
        log = Path(self.log.name).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"gunicorn for {self.variant} did not start:\n{log}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far."""
        total = 0.0
        try:
            master = psutil.Process(self.proc.pid)
            for process in [master, *master.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
        except psutil.Error:
            return float("nan")
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log.name)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p50, p99, request and error counts from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    count = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and count):
        raise ValueError(f"could not parse wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(
        float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(count.group(1)), errors
    )


def wrk(port: int, path: str, duration_s: float, connections: int) -> WrkResult:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--latency",
        "--timeout",
        "5s",
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 30, check=True
    )
    return parse_wrk(done.stdout)


def available() -> str | None:
    """None when the benchmark can run here, else why not."""
    if shutil.which("wrk") is None:
        return "wrk not found (Debian package 'wrk')"
    if shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None:
        return "gunicorn not installed in this environment"
    return None


def run(mode: Mode) -> list[EndToEndRow]:
    servers = {variant: Server(variant) for variant in ENDTOEND_VARIANTS}
    try:
        for server in servers.values():
            server.wait_ready()
        progress(f"end-to-end: {len(servers)} gunicorn servers up; warming up")
        for server in servers.values():
            wrk(server.port, SHAPE_PATHS[mode.e2e_shapes[0]], 1, mode.e2e_connections)
        results: dict[tuple[str, str], list[WrkResult]] = {}
        names = list(servers)
        total = mode.e2e_reps * len(mode.e2e_shapes) * len(names)
        done = 0
        for rep in range(mode.e2e_reps):
            for shape_index, shape in enumerate(mode.e2e_shapes):
                shift = (rep + shape_index) % len(names)
                order = names[shift:] + names[:shift]
                for variant in order:
                    cpu_before = servers[variant].cpu_seconds()
                    result = wrk(
                        servers[variant].port,
                        SHAPE_PATHS[shape],
                        mode.e2e_duration_s,
                        mode.e2e_connections,
                    )
                    cpu = servers[variant].cpu_seconds() - cpu_before
                    result = replace(result, server_cpu_s=cpu)
                    results.setdefault((shape, variant), []).append(result)
                    done += 1
                    progress(
                        f"end-to-end {done}/{total}: {shape} {variant} "
                        f"{result.requests_per_s:.0f} req/s p99 {result.p99_ms:.2f} ms "
                        f"server CPU {result.cpu_us_per_request:.0f} us/request"
                    )
    finally:
        for server in servers.values():
            server.stop()
    rows: list[EndToEndRow] = []
    for shape in mode.e2e_shapes:
        bare = results[(shape, "bare")]
        for variant in names:
            mine = results[(shape, variant)]
            rows.append(
                EndToEndRow(
                    shape=shape,
                    variant=variant,
                    rps=Spread.of([r.requests_per_s for r in mine]),
                    p99_ms=Spread.of([r.p99_ms for r in mine]),
                    rps_ratio=Spread.of(
                        ratios([r.requests_per_s for r in mine], [r.requests_per_s for r in bare])
                    ),
                    p99_ratio=Spread.of(ratios([r.p99_ms for r in mine], [r.p99_ms for r in bare])),
                    cpu_us_per_request=Spread.of([r.cpu_us_per_request for r in mine]),
                    capacity_ratio=Spread.of(
                        ratios(
                            [r.cpu_us_per_request for r in bare],
                            [r.cpu_us_per_request for r in mine],
                        )
                    ),
                    errors=sum(r.errors for r in mine),
                )
            )
    return rows
