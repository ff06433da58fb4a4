"""The ``wsgiprof`` command against a live application on loopback."""

from __future__ import annotations

import csv
import io
import json
import pstats
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers import ThreadedServer, free_port, load
from wsgiprof import Config, ProfilerMiddleware
from wsgiprof.cli import (
    DOWNLOAD_FORMATS,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    main,
    open_path,
    slug,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

TOKEN = "cli-token-12345"


def busy(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    busy(20_000)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def live(threaded_server: Callable[[WSGIApplication], ThreadedServer]) -> Iterator[str]:
    config = Config(enabled=True, sample_rate=1.0, token=TOKEN, store="memory")
    middleware = ProfilerMiddleware(app, config=config)
    url = threaded_server(middleware).url
    assert set(load(url + "/orders/12", 20, 4)) == {200}
    yield url
    middleware.close()


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSGIPROF_TOKEN", TOKEN)


@pytest.mark.usefixtures("token_env")
def test_top_prints_endpoints_and_hottest_function(live: str) -> None:
    out = io.StringIO()
    assert main(["top", live], out=out) == 0
    text = out.getvalue()
    assert "GET /orders/{int}" in text
    assert "busy" in text
    assert " 20 " in text


@pytest.mark.usefixtures("token_env")
def test_pull_saves_every_format_readable(live: str, tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["pull", live, "-o", str(tmp_path)], out=out) == 0
    names = {p.name for p in tmp_path.iterdir()}
    for target in ("all", slug("GET /orders/{int}")):
        assert {f"{target}.{fmt}" for fmt in DOWNLOAD_FORMATS} <= names
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["endpoints"][0]["sampled"] == 20
    stats = pstats.Stats(str(tmp_path / "all.prof"))
    assert any(func[2] == "busy" for func in stats.stats)  # type: ignore[attr-defined]


def test_token_file_is_read(live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSGIPROF_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert main(["top", live, "--token-file", str(token_file)], out=io.StringIO()) == 0


def test_wrong_token_is_one_line_and_exit_4(
    live: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WSGIPROF_TOKEN", "not-the-token")
    assert main(["top", live], out=io.StringIO()) == EXIT_REFUSED
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "token refused" in error
    assert "not-the-token" not in error


def test_missing_token_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WSGIPROF_TOKEN", raising=False)
    assert main(["top", "http://127.0.0.1:9"], out=io.StringIO()) == EXIT_USAGE
    assert "WSGIPROF_TOKEN" in capsys.readouterr().err


@pytest.mark.usefixtures("token_env")
def test_unreachable_host_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["top", url], out=io.StringIO()) == EXIT_UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err


@pytest.mark.usefixtures("token_env")
def test_non_http_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "file:///etc/passwd"], out=io.StringIO()) == EXIT_USAGE
    assert "not an http(s) URL" in capsys.readouterr().err


def test_slug_is_file_name_safe() -> None:
    assert slug("GET /users/<int:user_id>") == "get-users-int-user-id"
    assert slug("<<>>") == "endpoint"


# -- runs, diff, pull's report and requests.csv, open ------------------------------------------


@pytest.mark.usefixtures("token_env")
def test_pull_saves_requests_csv_and_an_offline_report(live: str, tmp_path: Path) -> None:
    assert main(["pull", live, "-o", str(tmp_path)], out=io.StringIO()) == 0
    rows = list(csv.DictReader((tmp_path / "requests.csv").open()))
    assert len(rows) == 20
    assert {row["endpoint"] for row in rows} == {"GET /orders/{int}"}
    assert all(float(row["cpu_ms"]) > 0 for row in rows)
    report = (tmp_path / "report.html").read_text()
    assert "GET /orders/{int}" in report
    assert "<script>" not in report, "no inline script"
    assert 'src="report_files/flame-data.js"' in report
    data = (tmp_path / "report_files" / "flame-data.js").read_text()
    assert data.startswith("window.WSGIPROF_FLAME_DATA = ")
    assert "busy" in data
    for name in ("flame.js", "dashboard.js", "dashboard.css"):
        assert (tmp_path / "report_files" / name).is_file()


@pytest.mark.usefixtures("token_env")
def test_runs_save_list_diff_and_delete(live: str, tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["runs", live, "--save", "baseline"], out=out) == 0
    assert "saved run 1 'baseline': 20 requests" in out.getvalue()
    assert set(load(live + "/orders/12", 10, 2)) == {200}
    assert main(["runs", live, "--save", "second"], out=io.StringIO()) == 0
    out = io.StringIO()
    assert main(["runs", live], out=out) == 0
    listing = out.getvalue()
    assert "baseline" in listing
    assert "second" in listing

    out = io.StringIO()
    html = tmp_path / "diff.html"
    assert main(["diff", live, "baseline", "2", "--html", str(html)], out=out) == 0
    text = out.getvalue()
    assert "A = baseline   B = second" in text
    assert "GET /orders/{int}" in text
    assert "busy" in text
    assert "<script>" not in html.read_text()
    assert '"diff":{"a":"baseline"' in (tmp_path / "diff_files" / "flame-data.js").read_text()

    run_dir = tmp_path / "run1"
    assert main(["pull", live, "--run", "1", "-o", str(run_dir)], out=io.StringIO()) == 0
    assert json.loads((run_dir / "summary.json").read_text())["run"]["label"] == "baseline"
    assert not (run_dir / "requests.csv").exists()

    assert main(["runs", live, "--delete", "1"], out=io.StringIO()) == 0
    assert main(["runs", live, "--delete", "1"], out=io.StringIO()) == 1


@pytest.mark.usefixtures("token_env")
def test_unknown_run_is_one_line_and_exit_1(live: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", live, "nope", "current"], out=io.StringIO()) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no saved run 'nope'" in error


def test_diff_of_two_pulled_folders(
    tmp_path: Path, live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSGIPROF_TOKEN", TOKEN)
    before, after = tmp_path / "before", tmp_path / "after"
    assert main(["pull", live, "-o", str(before)], out=io.StringIO()) == 0
    assert main(["pull", live, "-o", str(after)], out=io.StringIO()) == 0
    monkeypatch.delenv("WSGIPROF_TOKEN")  # folders need no token
    out = io.StringIO()
    html = tmp_path / "cmp.html"
    assert main(["diff", str(before), str(after), "--html", str(html)], out=out) == 0
    assert "A = before   B = after" in out.getvalue()
    assert "+0%" in out.getvalue()
    assert html.is_file()


def test_diff_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(tmp_path)], out=io.StringIO()) == EXIT_USAGE
    assert main(["diff", str(tmp_path), str(tmp_path)], out=io.StringIO()) == EXIT_USAGE
    assert "cannot read" in capsys.readouterr().err


def test_open_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    (tmp_path / "report.html").write_text("<p>report</p>")
    (tmp_path / "all.speedscope.json").write_text("{}")
    (tmp_path / "all.prof").write_bytes(b"")
    out = io.StringIO()

    def browser(uri: str) -> bool:
        opened.append(uri)
        return True

    def snakeviz(argv: Sequence[str]) -> int:
        launched.append(argv)
        return 0

    assert open_path(tmp_path, out=out, browser=browser) == 0
    assert opened == [(tmp_path / "report.html").resolve().as_uri()]
    assert open_path(tmp_path / "all.speedscope.json", out=out) == 0
    assert "speedscope" in out.getvalue()
    launched: list[Sequence[str]] = []
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/snakeviz")
    code = open_path(tmp_path / "all.prof", out=out, run=snakeviz)
    assert code == 0
    assert launched == [["/usr/bin/snakeviz", str(tmp_path / "all.prof")]]
    assert main(["open", str(tmp_path / "missing.prof")], out=out) == EXIT_USAGE
