"""The ``wsgiprof`` command: read a running application's profiles from a terminal.

Usage::

    export WSGIPROF_TOKEN=...            # or --token-file PATH; never on the command line
    wsgiprof top http://staging:8000     # endpoints by CPU share and their hottest functions
    wsgiprof top URL --watch 2           # refresh every 2 seconds, like top
    wsgiprof pull URL -o profiles/       # every format, summary.json, requests.csv, report.html
    wsgiprof runs URL --save baseline    # close the window as a saved run (list: wsgiprof runs URL)
    wsgiprof diff URL baseline tuned     # compare two runs (ids or labels; "current" = the window)
    wsgiprof diff old/ new/ --html d.html  # compare two pulled folders, with an offline report
    wsgiprof open profiles/              # the offline report; .prof opens in snakeviz

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
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Callable, Sequence
from importlib.resources import files as resource_files
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
        return self.request("GET", path)

    def request(self, method: str, path: str, body: object = None) -> bytes:
        """Send one request; a ``body`` goes as JSON. Failures raise :class:`CliError`."""
        headers = {"Authorization": f"Bearer {self._token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        # The scheme was checked to be http(s) in __init__.
        request = urllib.request.Request(  # noqa: S310
            self.base + path, data=payload, method=method, headers=headers
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

    def json(self, path: str, *, method: str = "GET", body: object = None) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.request(method, path, body))
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


def pull(client: Client, directory: Path, *, out: TextIO, run: str | None = None) -> int:
    """Save summary.json, every format for all endpoints and for each endpoint, requests.csv
    (the current window only) and an offline HTML report (``report.html``)."""
    query = f"?run={urllib.parse.quote(run, safe='')}" if run else ""
    summary = client.json(f"/api/summary{query}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    targets = [("all", "/api/profile")] + [
        (slug(row["name"]), f"/api/endpoints/{row['id']}/profile") for row in summary["endpoints"]
    ]
    total = len(targets) * len(DOWNLOAD_FORMATS) + (1 if run is None else 0) + 1
    done = 0
    saved = ["summary.json"]
    for name, path in targets:
        for fmt in DOWNLOAD_FORMATS:
            (directory / f"{name}.{fmt}").write_bytes(client.get(f"{path}.{fmt}{query}"))
            saved.append(f"{name}.{fmt}")
            done += 1
            _progress(done, total, out)
    if run is None:
        (directory / "requests.csv").write_bytes(client.get("/api/requests.csv"))
        saved.append("requests.csv")
        done += 1
        _progress(done, total, out)
    flame = client.json(f"/api/flame.json{query}")
    write_report(directory / "report.html", summary=summary, flame=flame, files=saved)
    done += 1
    _progress(done, total, out)
    print(f"saved {len(saved) + 1} files in {directory}/", file=out)
    print(f"  offline report: {directory / 'report.html'}  (wsgiprof open {directory})", file=out)
    print(f"  call tree:      snakeviz {directory / 'all.prof'}", file=out)
    return EXIT_OK


def write_report(
    path: Path,
    *,
    flame: dict[str, Any],
    summary: dict[str, Any] | None = None,
    diff: dict[str, Any] | None = None,
    files: Sequence[str] = (),
) -> Path:
    """Write an offline HTML report: ``path`` and a ``<name>_files/`` folder beside it holding
    the dashboard's CSS and JS and the flamegraph data as a script (browsers refuse to fetch
    files from disk, but load scripts), so it opens from disk with no server and no network.
    A pulled window's report when ``summary`` is given, else a comparison (``diff``)."""
    from wsgiprof.dashboard.pages import render_diff_report, render_report

    assets = path.parent / f"{path.stem}_files"
    assets.mkdir(parents=True, exist_ok=True)
    static = resource_files("wsgiprof.dashboard").joinpath("static")
    for name in ("dashboard.css", "dashboard.js", "flame.js"):
        (assets / name).write_bytes(static.joinpath(name).read_bytes())
    data = json.dumps(flame, separators=(",", ":"), allow_nan=False)
    (assets / "flame-data.js").write_text(
        f"window.WSGIPROF_FLAME_DATA = {data};\n", encoding="utf-8"
    )
    if summary is not None:
        page = render_report(summary, files, assets.name)
    else:
        assert diff is not None
        page = render_diff_report(diff, assets.name)
    path.write_text(page, encoding="utf-8")
    return path


def _progress(done: int, total: int, out: TextIO) -> None:
    if out.isatty():
        width = 30
        filled = width * done // total
        end = "\n" if done == total else ""
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end, file=out)
        out.flush()


def format_runs(runs: Sequence[dict[str, Any]]) -> str:
    """Saved runs as a terminal table, oldest first."""
    if not runs:
        return "(no saved runs: save the current window with --save LABEL)"
    lines = [
        f"{'id':>4}  {'label':<24} {'started (UTC)':<19} {'length':>8} {'requests':>9} "
        f"{'sampled':>8} {'CPU s':>8}"
    ]
    for run in runs:
        window = run["window"]
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(window["start"]))
        lines.append(
            f"{run['id']:>4}  {_clip(run['label'], 24):<24} {started:<19} "
            f"{window['end'] - window['start']:>7.0f}s {run['requests']:>9} "
            f"{run['sampled']:>8} {run['cpu_seconds']:>8.2f}"
        )
    return "\n".join(lines)


def runs(client: Client, *, save: str | None, delete: str | None, out: TextIO) -> int:
    """List saved runs; or save the current window as a run; or delete one."""
    if save is not None:
        run = client.json("/api/runs", method="POST", body={"label": save})["run"]
        print(
            f"saved run {run['id']} {run['label']!r}: {run['requests']} requests, "
            f"{run['sampled']} profiled, {run['cpu_seconds']:.2f} CPU s; a new window started",
            file=out,
        )
        return EXIT_OK
    if delete is not None:
        client.request("DELETE", f"/api/runs/{urllib.parse.quote(delete, safe='')}")
        print(f"deleted run {delete}", file=out)
        return EXIT_OK
    print(format_runs(client.json("/api/runs")["runs"]), file=out)
    return EXIT_OK


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _change(value: float | None) -> str:
    return "new" if value is None else f"{value * 100:+.0f}%"


def format_diff(diff: dict[str, Any], *, functions: int = 15) -> str:
    """A comparison (``GET /api/diff``) as terminal tables: endpoints, then the functions whose
    self CPU per request changed most."""
    lines = [
        f"A = {diff['a']}   B = {diff['b']}   (CPU ms per sampled request; share of all CPU)",
        f"{'endpoint':<32} {'A ms':>8} {'B ms':>8} {'change':>7} {'share A':>8} {'share B':>8}",
    ]
    for entry in diff["endpoints"]:
        cpu_a, cpu_b = entry["cpu_ms_per_request"]
        share_a, share_b = entry["share"]
        change = entry["cpu_change"] if cpu_a is not None else None
        lines.append(
            f"{_clip(entry['name'], 32):<32} {_ms(cpu_a):>8} {_ms(cpu_b):>8} "
            f"{_change(change) if cpu_b is not None else 'gone':>7} "
            f"{100 * share_a:>7.1f}% {100 * share_b:>7.1f}%"
        )
    lines.append("")
    lines.append(
        f"{'function (endpoint)':<52} {'self A':>7} {'self B':>7} {'change':>7} "
        f"{'total A':>8} {'total B':>8}"
    )
    for entry in diff["functions"][:functions]:
        self_a, self_b = entry["self_ms_per_request"]
        total_a, total_b = entry["total_ms_per_request"]
        label = f"{entry['name']} ({entry['file']}:{entry['line']}) in {entry['endpoint']}"
        change = entry["self_change"] if self_a else None
        lines.append(
            f"{_clip(label, 52):<52} {self_a:>7.2f} {self_b:>7.2f} "
            f"{_change(change) if self_a or self_b else '-':>7} {total_a:>8.2f} {total_b:>8.2f}"
        )
    return "\n".join(lines)


def load_pulled(folder: Path) -> dict[str, Any]:
    """The endpoints of a folder written by ``pull`` (its summary.json and all.speedscope.json),
    keyed by name."""
    from wsgiprof.diff import profiles_from_pulled

    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        speedscope = json.loads((folder / "all.speedscope.json").read_text(encoding="utf-8"))
        return dict(profiles_from_pulled(summary, speedscope))
    except OSError as error:
        raise CliError(f"cannot read {folder}: {error.strerror}", EXIT_USAGE) from None
    except ValueError as error:
        raise CliError(f"{folder}: {error}", EXIT_USAGE) from None


def diff_folders(a: Path, b: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The comparison and the differential flamegraph of two pulled folders."""
    from wsgiprof.dashboard.flame import frame_kind
    from wsgiprof.diff import compare, diff_flame

    before, after = load_pulled(a), load_pulled(b)
    labels = {"a_label": a.name or str(a), "b_label": b.name or str(b)}
    diff = compare(before, after, **labels).to_dict()
    flame = diff_flame(
        sorted(before.values(), key=lambda p: p.name),
        sorted(after.values(), key=lambda p: p.name),
        name="all endpoints",
        by_endpoint=True,
        kind=frame_kind,
        **labels,
    )
    return diff, flame


def diff_command(
    targets: Sequence[str],
    *,
    token_file: str | None,
    prefix: str,
    html: Path | None,
    out: TextIO,
) -> int:
    """``diff URL A B`` (two runs of a live application) or ``diff DIR_A DIR_B`` (two pulled
    folders): print the comparison, and write an offline HTML report with ``--html``."""
    if len(targets) == 2:
        diff, flame = diff_folders(Path(targets[0]), Path(targets[1]))
    elif len(targets) == 3:
        client = Client(targets[0], token=read_token(token_file), prefix=prefix)
        query = urllib.parse.urlencode({"a": targets[1], "b": targets[2]})
        diff = client.json(f"/api/diff?{query}")
        flame = client.json(f"/api/diff/flame.json?{query}") if html else {}
    else:
        raise CliError("diff takes URL RUN_A RUN_B, or two pulled folders", EXIT_USAGE)
    print(format_diff(diff), file=out)
    if html is not None:
        write_report(html, flame=flame, diff=diff)
        print(f"\nHTML report: {html}  (open it with: wsgiprof open {html})", file=out)
    return EXIT_OK


VIEWER_HINTS = {
    ".speedscope.json": "open https://www.speedscope.app and drop {path} on it (the file is read "
    "in your browser, not uploaded), or run: npx speedscope {path}",
    ".pb.gz": "go tool pprof -http=127.0.0.1:0 {path}",
    ".folded": "flamegraph.pl {path} > flame.svg   (or: inferno-flamegraph {path} > flame.svg)",
    ".csv": "a table: one row per profiled request; join it with your load tester's raw CSV",
}


def open_path(
    path: Path,
    *,
    out: TextIO,
    browser: Callable[[str], bool] = webbrowser.open,
    run: Callable[[Sequence[str]], int] = subprocess.call,
) -> int:
    """Open a pulled file or folder: an offline report in the browser, a ``.prof`` in snakeviz,
    and for other viewers the command to use."""
    if path.is_dir():
        path = path / "report.html"
    if not path.exists():
        raise CliError(f"no such file: {path}", EXIT_USAGE)
    name = path.name
    if name.endswith(".html"):
        uri = path.resolve().as_uri()
        print(f"opening {uri}", file=out)
        if not browser(uri):
            print(f"no browser found: open {uri} yourself", file=out)
        return EXIT_OK
    if name.endswith(".prof"):
        snakeviz = shutil.which("snakeviz")
        if snakeviz is None:
            raise CliError("snakeviz is not installed: pip install snakeviz", EXIT_USAGE)
        print(f"snakeviz {path}  (Ctrl+C to stop)", file=out)
        return run([snakeviz, str(path)])
    for suffix, hint in VIEWER_HINTS.items():
        if name.endswith(suffix):
            print(hint.format(path=path), file=out)
            return EXIT_OK
    raise CliError(f"do not know how to open {path}", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsgiprof",
        description="Read a running application's wsgiprof profiles.",
        epilog="Exit codes: 0 ok, 1 the server answered with an error, 2 usage, "
        "3 unreachable, 4 token refused. The token comes from WSGIPROF_TOKEN or --token-file.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", help="the application's base URL, e.g. http://127.0.0.1:8000")
    auth = argparse.ArgumentParser(add_help=False)
    auth.add_argument("--token-file", help="read the token from this file")
    auth.add_argument("--prefix", default="/_wsgiprof", help="route prefix (WSGIPROF_PATH)")
    commands = parser.add_subparsers(dest="command", required=True)
    top_parser = commands.add_parser("top", parents=[common, auth], help="endpoints by CPU share")
    top_parser.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every N s")
    pull_parser = commands.add_parser(
        "pull", parents=[common, auth], help="download every profile and an offline report"
    )
    pull_parser.add_argument("-o", "--output", type=Path, default=Path("wsgiprof-profiles"))
    pull_parser.add_argument("--run", metavar="ID", help="a saved run instead of the window")
    runs_parser = commands.add_parser(
        "runs", parents=[common, auth], help="list, save or delete saved runs"
    )
    action = runs_parser.add_mutually_exclusive_group()
    action.add_argument("--save", metavar="LABEL", help="save the current window as a run")
    action.add_argument("--delete", metavar="ID", help="delete a saved run")
    diff_parser = commands.add_parser(
        "diff",
        parents=[auth],
        help="compare two runs (URL A B) or two pulled folders (DIR_A DIR_B)",
    )
    diff_parser.add_argument(
        "targets", nargs="+", metavar="TARGET", help="URL RUN_A RUN_B, or DIR_A DIR_B"
    )
    diff_parser.add_argument("--html", type=Path, metavar="PATH", help="write an HTML report")
    open_parser = commands.add_parser("open", help="open a pulled file, folder or report")
    open_parser.add_argument("path", type=Path)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Entry point of the ``wsgiprof`` console script; returns the exit code."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.command == "open":
            return open_path(args.path, out=out)
        if args.command == "diff":
            return diff_command(
                args.targets,
                token_file=args.token_file,
                prefix=args.prefix,
                html=args.html,
                out=out,
            )
        client = Client(args.url, token=read_token(args.token_file), prefix=args.prefix)
        if args.command == "top":
            return top(client, watch=args.watch, out=out)
        if args.command == "runs":
            return runs(client, save=args.save, delete=args.delete, out=out)
        return pull(client, args.output, out=out, run=args.run)
    except CliError as error:
        print(f"wsgiprof: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
