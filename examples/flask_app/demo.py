"""The main job: the example app under a real server and a bounded load, profiled by wsgiprof.

Run it with ``make demo`` (or ``python -m examples.flask_app.demo``). It starts the example Flask
API under gunicorn (threaded workers) with ``WSGIPROF_ENABLED=1``, sends a bounded mix of requests
on loopback, prints the per-endpoint table from ``/_wsgiprof/api/summary`` and saves every profile
download into ``demo-output/`` with the commands to open them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from wsgiprof.cli import Client, format_table, pull

MIX: Sequence[tuple[str, str, int]] = (
    ("GET", "/report", 3),
    ("POST", "/login", 2),
    ("GET", "/users/{n}", 6),
    ("GET", "/inventory", 4),
    ("GET", "/health", 5),
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(port: int, env: dict[str, str], workers: int, threads: int) -> Iterator[str]:
    """Run the example app under gunicorn on loopback until the block ends."""
    log = tempfile.NamedTemporaryFile(prefix="wsgiprof-demo-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable, "-m", "gunicorn", "examples.flask_app.app:app",
        "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
        "--workers", str(workers), "--threads", str(threads), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the server did not start; its log:\n{Path(log.name).read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        os.unlink(log.name)


def _request(url: str, method: str, path: str, index: int) -> int:
    body = json.dumps({"password": f"pw-{index}"}).encode() if method == "POST" else None
    request = urllib.request.Request(
        url + path.format(n=index * 7919 % 5000),
        data=body,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def run_load(url: str, total: int, concurrency: int) -> dict[int, int]:
    """Send ``total`` requests of the mix with ``concurrency`` clients; show progress."""
    plan = [(m, p) for m, p, weight in MIX for _ in range(weight)]
    statuses: dict[int, int] = {}
    tty = sys.stdout.isatty()
    steps, start, end = (50, "\r", "") if tty else (4, "", "\n")
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(_request, url, *plan[i % len(plan)], i) for i in range(total)]
        for done, future in enumerate(futures, 1):
            status = future.result()
            statuses[status] = statuses.get(status, 0) + 1
            if done % max(total // steps, 1) == 0 or done == total:
                rate = done / (time.monotonic() - started)
                print(
                    f"{start}  load: {done}/{total} requests, {rate:.0f} req/s", end=end, flush=True
                )
    if tty:
        print()
    return statuses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1500, help="total requests (default 1500)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--sample-rate", type=float, default=0.2, help="WSGIPROF_SAMPLE_RATE")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    args = parser.parse_args(argv)

    token = base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
    store_dir = tempfile.mkdtemp(prefix="wsgiprof-demo-")
    env = dict(
        os.environ,
        WSGIPROF_ENABLED="1",
        WSGIPROF_TOKEN=token,
        WSGIPROF_SAMPLE_RATE=str(args.sample_rate),
        WSGIPROF_STORE=f"sqlite:///{store_dir}/profiles.sqlite3",
        WSGIPROF_FLUSH_INTERVAL="0.5",
    )
    port = _free_port()
    print(
        f"Example app under gunicorn ({args.workers} worker x {args.threads} threads), "
        f"sample rate {args.sample_rate}, {args.requests} requests on 127.0.0.1:{port}"
    )
    with serve(port, env, args.workers, args.threads) as url:
        statuses = run_load(url, args.requests, args.concurrency)
        print(f"  statuses: {dict(sorted(statuses.items()))}")
        time.sleep(1.0)  # every worker flushes its last deltas to the shared store
        client = Client(url, token=token)
        print()
        print(format_table(client.json("/api/summary")))
        print()
        if args.out.exists():
            shutil.rmtree(args.out)
        pull(client, args.out, out=sys.stdout)
    shutil.rmtree(store_dir, ignore_errors=True)
    print("Open them with:")
    print(f"  snakeviz {args.out}/all.prof                 # call tree and icicle, in a browser")
    print(f"  speedscope {args.out}/all.speedscope.json    # or drop it on speedscope.app")
    print(f"  go tool pprof -top {args.out}/all.pb.gz       # or pprof -http=: for a web view")
    print(f"  flamegraph.pl {args.out}/all.folded > all.svg  # or inferno-flamegraph")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
