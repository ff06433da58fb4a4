"""The ``wsgiprof`` command: read a running application's profiles from a terminal.

Usage::

    export WSGIPROF_TOKEN=...            # or --token-file PATH; never on the command line
    wsgiprof top http://staging:8000     # endpoints by CPU share and their hottest functions
    wsgiprof top URL --watch 2           # refresh every 2 seconds, like top
    wsgiprof pull URL -o profiles/       # every endpoint in every format, plus summary.json

``URL`` is the application's base URL; the route prefix (``/_wsgiprof``) is added unless the URL
already ends with it (``--prefix`` changes it).

Exit codes: 0 success, 1 the server answered with an error, 2 bad usage or configuration
(no token), 3 the server could not be reached, 4 the token was refused.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_HTTP, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4
DOWNLOAD_FORMATS = ("prof", "speedscope.json", "folded", "pb.gz")


class CliError(Exception):
    """A failure reported as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Client:
    """A minimal client of the route's JSON API.

    Example::

        client = Client("http://127.0.0.1:8000", token="s3cret-token")
        summary = client.json("/api/summary")
    """

    def __init__(self, url: str, *, token: str, prefix: str = "/_wsgiprof", timeout: float = 30):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"not an http(s) URL: {url!r}", EXIT_USAGE)
        base = url.rstrip("/")
        self.base = base if base.endswith(prefix) else base + prefix
        self._token = token
        self.timeout = timeout

    def get(self, path: str) -> bytes:
        # The scheme was checked to be http(s) in __init__.
        request = urllib.request.Request(  # noqa: S310
            self.base + path, headers={"Authorization": f"Bearer {self._token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as error:
            detail = _error_message(error)
            if error.code in (401, 403):
                raise CliError(f"token refused by {self.base} ({detail})", EXIT_REFUSED) from None
            if error.code == 404 and path == "/api/summary":
                detail += "; is WSGIPROF_ENABLED=1 with a WSGIPROF_TOKEN set, and the prefix right?"
            raise CliError(f"{self.base}{path}: HTTP {error.code}: {detail}", EXIT_HTTP) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach {self.base}: {reason}", EXIT_UNREACHABLE) from None

    def json(self, path: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.get(path))
        return data


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
        return str(body.get("error", error.reason))
    except (ValueError, AttributeError, OSError):
        return str(error.reason)


def read_token(token_file: str | None) -> str:
    """The token from ``--token-file`` or ``WSGIPROF_TOKEN``; never from visible arguments."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CliError(f"cannot read the token file: {error.strerror}", EXIT_USAGE) from None
    else:
        token = os.environ.get("WSGIPROF_TOKEN", "").strip()
    if not token:
        raise CliError("no token: set WSGIPROF_TOKEN or pass --token-file PATH", EXIT_USAGE)
    return token


def format_table(summary: dict[str, Any], *, limit: int = 20) -> str:
    """Endpoints by share of sampled CPU, with per-request CPU and wall time and the hottest
    function, under a line about the window and the worker processes."""
    lines = []
    window = summary.get("window", {})
    seconds = max(float(window.get("end", 0)) - float(window.get("start", 0)), 0.0)
    processes = summary.get("processes", [])
    busy = ", ".join(f"{p['pid']}: {p.get('cpu_percent') or 0:.0f}%" for p in processes[:8])
    lines.append(
        f"window {seconds:.0f} s, engine {summary.get('engine')}, sample rate "
        f"{summary.get('sample_rate')}, {len(processes)} worker(s) CPU {busy or '-'}"
    )
    lines.append(
        f"{'endpoint':<32} {'reqs':>6} {'sampled':>7} {'CPU%':>5} {'cpu ms':>7} {'wall ms':>8}"
        "  hottest function (self CPU)"
    )
    for row in summary.get("endpoints", [])[:limit]:
        sampled = max(int(row["sampled"]), 1)
        top = row["top_functions"][0] if row.get("top_functions") else None
        hottest = f"{top['name']} ({top['file']}:{top['line']})" if top else "-"
        lines.append(
            f"{_clip(row['name'], 32):<32} {row['requests']:>6} {row['sampled']:>7} "
            f"{100 * (row['cpu_share'] or 0):>5.1f} {1000 * row['cpu_seconds'] / sampled:>7.1f} "
            f"{1000 * row['wall_seconds'] / sampled:>8.1f}  {hottest}"
        )
    if not summary.get("endpoints"):
        lines.append("(no requests profiled in this window yet)")
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def slug(name: str) -> str:
    """A file-name-safe form of an endpoint name: ``GET /users/<int:id>`` → ``get-users-int-id``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "endpoint"


def top(client: Client, *, watch: float | None, out: TextIO) -> int:
    while True:
        table = format_table(client.json("/api/summary"))
        if watch is None:
            print(table, file=out)
            return EXIT_OK
        print("\033[H\033[2J" + table, file=out, flush=True)
        time.sleep(watch)


def pull(client: Client, directory: Path, *, out: TextIO) -> int:
    """Save summary.json and every format for all endpoints and for each endpoint."""
    summary = client.json("/api/summary")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    targets = [("all", "/api/profile")] + [
        (slug(row["name"]), f"/api/endpoints/{row['id']}/profile") for row in summary["endpoints"]
    ]
    total = len(targets) * len(DOWNLOAD_FORMATS)
    done = 0
    for name, path in targets:
        for fmt in DOWNLOAD_FORMATS:
            (directory / f"{name}.{fmt}").write_bytes(client.get(f"{path}.{fmt}"))
            done += 1
            _progress(done, total, out)
    print(f"saved {total + 1} files in {directory}/ (open all.prof with: snakeviz)", file=out)
    return EXIT_OK


def _progress(done: int, total: int, out: TextIO) -> None:
    if out.isatty():
        width = 30
        filled = width * done // total
        end = "\n" if done == total else ""
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end, file=out)
        out.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsgiprof", description="Read a running application's wsgiprof profiles."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", help="the application's base URL, e.g. http://127.0.0.1:8000")
    common.add_argument("--token-file", help="read the token from this file")
    common.add_argument("--prefix", default="/_wsgiprof", help="route prefix (WSGIPROF_PATH)")
    commands = parser.add_subparsers(dest="command", required=True)
    top_parser = commands.add_parser("top", parents=[common], help="endpoints by CPU share")
    top_parser.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every N s")
    pull_parser = commands.add_parser("pull", parents=[common], help="download every profile")
    pull_parser.add_argument("-o", "--output", type=Path, default=Path("wsgiprof-profiles"))
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Entry point of the ``wsgiprof`` console script; returns the exit code."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        client = Client(args.url, token=read_token(args.token_file), prefix=args.prefix)
        if args.command == "top":
            return top(client, watch=args.watch, out=out)
        return pull(client, args.output, out=out)
    except CliError as error:
        print(f"wsgiprof: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
