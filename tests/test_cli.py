"""The ``wsgiprof`` command against a live application on loopback."""

from __future__ import annotations

import io
import json
import pstats
from collections.abc import Callable, Iterator
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
