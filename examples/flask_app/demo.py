"""The main job: tune, load again, and know whether the CPU profile changed.

Run it with ``make demo`` (or ``python -m examples.flask_app.demo``). It starts the example Flask
API under gunicorn (several worker processes, threads) with ``WSGIPROF_ENABLED=1`` and a shared
SQLite store, drives a headless Locust load against it on loopback for a bounded time, and saves
the window as the run ``baseline``. Then it restarts the application with
``EXAMPLE_FAST_REPORT=1`` (a cheaper ``render_rows``), runs the same load, saves the run
``fast-report``, prints the comparison per request and writes the HTML reports into
``demo-output/``. ``--quick`` is the same story with small numbers (the test suite runs it).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from wsgiprof.cli import Client, diff_command, format_table, pull

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


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


def run_locust(url: str, *, users: int, seconds: int, csv_prefix: Path) -> str:
    """Run Locust headless for ``seconds`` with ``users`` clients; one line of results."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s",
        "--host", url, "--csv", str(csv_prefix), "--only-summary", "--stop-timeout", "2",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=seconds + 60
    )
    stats = Path(f"{csv_prefix}_stats.csv")
    if not stats.exists():
        sys.exit(f"locust failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    total = next(row for row in csv.DictReader(stats.open()) if row["Name"] == "Aggregated")
    return (
        f"{total['Request Count']} requests, {total['Failure Count']} failures, "
        f"{float(total['Requests/s']):.0f} req/s, median {total['Median Response Time']} ms"
    )


def load_and_save(
    args: argparse.Namespace, env: dict[str, str], label: str, token: str
) -> tuple[str, str]:
    """Serve the app with ``env``, run the load, save the window as run ``label``; the run id
    and the app's summary table."""
    port = _free_port()
    with serve(port, env, args.workers, args.threads) as url:
        print(f"  Locust: {args.users} users for {args.seconds} s on {url} ...", flush=True)
        line = run_locust(
            url,
            users=args.users,
            seconds=args.seconds,
            csv_prefix=args.out / f"locust-{label}",
        )
        print(f"  Locust: {line}")
        time.sleep(1.0)  # every worker flushes its last deltas to the shared store
        client = Client(url, token=token)
        table = format_table(client.json("/api/summary"))
        run = client.json("/api/runs", method="POST", body={"label": label})["run"]
        pull(client, args.out / label, out=io.StringIO(), run=run["id"])
        print(f"  saved run {run['id']} {label!r}: {run['sampled']} profiled requests")
        return str(run["id"]), table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=20, help="length of each load run")
    parser.add_argument("--users", type=int, default=8, help="concurrent Locust users")
    parser.add_argument("--sample-rate", type=float, default=0.2, help="WSGIPROF_SAMPLE_RATE")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small numbers (the test suite)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.users, args.workers, args.threads = 3, 4, 2, 2
        args.sample_rate = 0.5

    token = base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
    store_dir = tempfile.mkdtemp(prefix="wsgiprof-demo-")
    env = dict(
        os.environ,
        WSGIPROF_ENABLED="1",
        WSGIPROF_TOKEN=token,
        WSGIPROF_SAMPLE_RATE=str(args.sample_rate),
        WSGIPROF_STORE=f"sqlite:///{store_dir}/profiles.sqlite3",
        WSGIPROF_FLUSH_INTERVAL="0.5",
        EXAMPLE_FAST_REPORT="0",
    )
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    started = time.monotonic()
    try:
        print(
            f"1. Baseline: the example app under gunicorn ({args.workers} workers x "
            f"{args.threads} threads), sample rate {args.sample_rate}"
        )
        baseline, table = load_and_save(args, env, "baseline", token)
        print()
        print(table)
        print()
        print("2. The change: EXAMPLE_FAST_REPORT=1 makes render_rows cheaper; same load again")
        faster, _ = load_and_save(args, {**env, "EXAMPLE_FAST_REPORT": "1"}, "fast-report", token)
        print()
        print("3. The comparison, per request (the app restarted; the runs live in the store)")
        port = _free_port()
        token_file = Path(store_dir) / "token"
        token_file.write_text(token, encoding="utf-8")
        token_file.chmod(0o600)
        with serve(port, env, 1, 1) as url:
            diff_command(
                [url, baseline, faster],
                token_file=str(token_file),
                prefix="/_wsgiprof",
                html=args.out / "diff.html",
                out=sys.stdout,
            )
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    print()
    print(f"Done in {time.monotonic() - started:.0f} s. Open:")
    print(f"  wsgiprof open {args.out}/diff.html         # the comparison, differential flamegraph")
    print(f"  wsgiprof open {args.out}/baseline          # the baseline run's report")
    print(f"  wsgiprof open {args.out}/fast-report       # the second run's report")
    print(f"  snakeviz {args.out}/fast-report/all.prof   # call tree, or all.speedscope.json")
    print(f"  {args.out}/locust-*_stats_history.csv      # Locust's raw numbers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
