"""Bearer-token parsing and constant-time comparison (wsgiprof.auth)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

from wsgiprof.auth import bearer_token, token_matches

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

pytestmark = pytest.mark.filterwarnings("error::werkzeug.middleware.lint.WSGIWarning")

TOKEN = "s3cret-token"


def _environ(authorization: str | None) -> dict[str, str]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    return environ


def test_bearer_token_is_read_from_the_authorization_header() -> None:
    assert bearer_token(_environ(f"Bearer {TOKEN}")) == TOKEN


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    assert bearer_token(_environ(f"{scheme} {TOKEN}")) == TOKEN


def test_spaces_around_the_token_are_ignored() -> None:
    assert bearer_token(_environ(f"  Bearer   {TOKEN}  ")) == TOKEN


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpzM2NyZXQtdG9rZW4=", TOKEN]
)
def test_no_bearer_token_gives_none(authorization: str | None) -> None:
    assert bearer_token(_environ(authorization)) is None


def test_utf8_token_is_decoded_from_wsgi_latin1_text() -> None:
    wsgi_text = "Bearer pässwörd-1".encode().decode("latin-1")
    assert bearer_token(_environ(wsgi_text)) == "pässwörd-1"


def test_token_that_is_not_utf8_is_returned_as_sent() -> None:
    assert bearer_token(_environ("Bearer caf\xe9-token")) == "caf\xe9-token"


def test_token_matches_the_expected_token() -> None:
    assert token_matches(TOKEN, TOKEN)


@pytest.mark.parametrize("given", [None, "", "s3cret-toke", "s3cret-token!", "S3CRET-TOKEN"])
def test_other_tokens_do_not_match(given: str | None) -> None:
    assert not token_matches(given, TOKEN)


def test_empty_expected_token_matches_nothing() -> None:
    assert not token_matches("", "")


def test_non_ascii_tokens_compare_by_their_text() -> None:
    assert token_matches("pässwörd-1", "pässwörd-1")
    assert not token_matches("passwörd-1", "pässwörd-1")


def test_comparison_uses_hmac_compare_digest_on_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert token_matches(TOKEN, TOKEN)
    assert calls == [(TOKEN.encode(), TOKEN.encode())]


def test_token_sent_by_a_real_client_is_recognised() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        ok = token_matches(bearer_token(environ), TOKEN)
        start_response("200 OK" if ok else "401 Unauthorized", [("Content-Type", "text/plain")])
        return [b""]

    client = Client(LintMiddleware(app))
    with client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status_code == 200
    with client.get("/", headers={"Authorization": "Bearer wrong-token"}) as response:
        assert response.status_code == 401
