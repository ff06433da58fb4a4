"""Endpoint naming (wsgiprof.endpoints): Flask rules, werkzeug Maps, normalised paths, user keys."""

from __future__ import annotations

import logging
import random
import string
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import pytest
from flask import Blueprint, Flask, abort, request
from flask.signals import request_started
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import Map, Rule
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Response

from wsgiprof import endpoints
from wsgiprof.endpoints import (
    ENVIRON_KEY,
    MAX_NAME_LENGTH,
    EndpointNamer,
    normalize_path,
    safe_name,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

pytestmark = pytest.mark.filterwarnings("error::werkzeug.middleware.lint.WSGIWarning")


class NamingTap:
    """The middleware's contract in miniature: call the app, then name the request."""

    def __init__(
        self,
        app: WSGIApplication,
        endpoint_key: Callable[[WSGIEnvironment], str] | None = None,
        **kwargs: Map,
    ) -> None:
        self.app = app
        self.namer = EndpointNamer(app, endpoint_key, **kwargs)
        self.names: list[str] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = self.app(environ, start_response)
        self.names.append(self.namer.name(environ))
        return body


def _name_of(tap: NamingTap, app: WSGIApplication, path: str, method: str = "GET") -> str:
    # LintMiddleware takes the empty body of a HEAD response for a Content-Length mismatch.
    checked = app if method == "HEAD" else LintMiddleware(app)
    with Client(checked).open(path, method=method) as response:
        response.get_data()
    return tap.names[-1]


def _environ(path: str, method: str = "GET") -> WSGIEnvironment:
    return EnvironBuilder(path=path, method=method).get_environ()


# Flask ----------------------------------------------------------------------------------------


@pytest.fixture
def flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return str(user_id)

    @app.get("/private/<int:doc_id>")
    def private(doc_id: int) -> str:
        return "never"

    @app.before_request
    def guard() -> None:
        if request.path.startswith("/private/"):
            abort(403)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/folder/")
    def folder() -> str:
        return "folder"

    @app.get("/stream")
    def stream() -> Response:
        return Response(iter([b"a", b"b"]))

    blueprint = Blueprint("api", __name__, url_prefix="/api")

    @blueprint.get("/items/<name>")
    def item(name: str) -> str:
        return name

    app.register_blueprint(blueprint)
    return app


@pytest.fixture
def tapped(flask_app: Flask) -> NamingTap:
    tap = NamingTap(flask_app.wsgi_app)
    flask_app.wsgi_app = tap  # type: ignore[method-assign]
    return tap


def test_flask_wsgi_app_is_recognised(tapped: NamingTap) -> None:
    assert tapped.namer.strategy == "flask"


def test_flask_app_object_itself_is_recognised(flask_app: Flask) -> None:
    assert EndpointNamer(flask_app).strategy == "flask"


def test_flask_behind_werkzeug_middleware_is_recognised(flask_app: Flask) -> None:
    assert EndpointNamer(ProxyFix(flask_app.wsgi_app)).strategy == "flask"


def test_flask_route_template_names_the_request(tapped: NamingTap, flask_app: Flask) -> None:
    assert _name_of(tapped, flask_app, "/users/42") == "GET /users/<int:user_id>"


def test_rule_survives_flask_clearing_its_request(flask_app: Flask) -> None:
    after_call: list[tuple[object, object]] = []

    def outer(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = flask_app.wsgi_app(environ, start_response)
        after_call.append((environ["werkzeug.request"], environ[ENVIRON_KEY]))
        return body

    EndpointNamer(flask_app.wsgi_app)
    Client(LintMiddleware(outer)).get("/users/42").close()
    assert after_call == [(None, "/users/<int:user_id>")]


def test_flask_unknown_path_goes_to_the_unmatched_bucket(
    tapped: NamingTap, flask_app: Flask
) -> None:
    assert _name_of(tapped, flask_app, "/nope/123") == "GET [unmatched]"


def test_flask_wrong_method_goes_to_the_unmatched_bucket(
    tapped: NamingTap, flask_app: Flask
) -> None:
    assert _name_of(tapped, flask_app, "/users/42", "POST") == "POST [unmatched]"


def test_flask_strict_slash_redirect_goes_to_the_unmatched_bucket(
    tapped: NamingTap, flask_app: Flask
) -> None:
    assert _name_of(tapped, flask_app, "/folder") == "GET [unmatched]"


def test_flask_blueprint_route_keeps_its_prefix(tapped: NamingTap, flask_app: Flask) -> None:
    assert _name_of(tapped, flask_app, "/api/items/pen") == "GET /api/items/<name>"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_flask_automatic_methods_name_the_route(
    tapped: NamingTap, flask_app: Flask, method: str
) -> None:
    assert _name_of(tapped, flask_app, "/users/7", method) == f"{method} /users/<int:user_id>"


def test_flask_abort_in_before_request_still_names_the_route(
    tapped: NamingTap, flask_app: Flask
) -> None:
    assert _name_of(tapped, flask_app, "/private/9") == "GET /private/<int:doc_id>"


def test_flask_view_error_still_names_the_route(tapped: NamingTap, flask_app: Flask) -> None:
    assert _name_of(tapped, flask_app, "/boom") == "GET /boom"


def test_flask_streamed_response_is_named_before_the_body_is_read(
    tapped: NamingTap, flask_app: Flask
) -> None:
    assert _name_of(tapped, flask_app, "/stream") == "GET /stream"


def test_unknown_method_is_named_other(tapped: NamingTap, flask_app: Flask) -> None:
    assert _name_of(tapped, flask_app, "/users/1", "BREW") == "OTHER [unmatched]"


def test_flask_environ_never_seen_by_flask_falls_back_to_the_path(flask_app: Flask) -> None:
    namer = EndpointNamer(flask_app.wsgi_app)
    assert namer.name(_environ("/users/42")) == "GET /users/{int}"


def test_flask_receiver_is_connected_once_per_app(flask_app: Flask) -> None:
    EndpointNamer(flask_app.wsgi_app)
    EndpointNamer(flask_app)
    receiver = endpoints._flask_receiver
    assert receiver is not None
    assert list(request_started.receivers_for(flask_app)).count(receiver) == 1


# werkzeug Map -----------------------------------------------------------------------------------


class MapApp:
    """A bare werkzeug application routed by a Map, as in werkzeug's tutorial."""

    def __init__(self, url_map: Map) -> None:
        self.url_map = url_map

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return Response("ok")(environ, start_response)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.wsgi_app(environ, start_response)


def _map() -> Map:
    return Map(
        [
            Rule("/users/<int:user_id>", endpoint="user", methods=["GET"]),
            Rule("/folder/", endpoint="folder"),
            Rule("/café/<name>", endpoint="cafe"),
        ]
    )


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/users/42", "GET", "GET /users/<int:user_id>"),
        ("/users/42", "HEAD", "HEAD /users/<int:user_id>"),
        ("/users/42", "DELETE", "DELETE [unmatched]"),
        ("/users/x", "GET", "GET [unmatched]"),
        ("/folder", "GET", "GET [unmatched]"),
        ("/café/latte", "GET", "GET /café/<name>"),
    ],
)
def test_map_routed_app_is_named_by_its_rule(path: str, method: str, expected: str) -> None:
    app = MapApp(_map())
    tap = NamingTap(app)
    assert tap.namer.strategy == "werkzeug-map"
    assert _name_of(tap, tap, path, method) == expected


def test_map_is_found_through_a_bound_wsgi_app_method() -> None:
    app = MapApp(_map())
    assert EndpointNamer(app.wsgi_app).strategy == "werkzeug-map"


def test_explicit_url_map_is_used_for_any_app() -> None:
    def plain(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return Response("ok")(environ, start_response)

    tap = NamingTap(plain, url_map=_map())
    assert _name_of(tap, tap, "/users/5") == "GET /users/<int:user_id>"


def test_map_host_matching_names_each_host_by_its_own_rules() -> None:
    url_map = Map(
        [
            Rule("/<int:n>", endpoint="a", host="a.example"),
            Rule("/<n>", endpoint="b", host="b.example"),
        ],
        host_matching=True,
    )
    namer = EndpointNamer(MapApp(url_map))
    for host, expected in [("a.example", "GET /<int:n>"), ("b.example", "GET /<n>")] * 2:
        environ = EnvironBuilder(path="/1", base_url=f"http://{host}/").get_environ()
        assert namer.name(environ) == expected


def test_map_matches_below_the_script_name() -> None:
    namer = EndpointNamer(MapApp(_map()))
    environ = EnvironBuilder(path="/users/3", base_url="http://localhost/mounted/").get_environ()
    assert environ["SCRIPT_NAME"] == "/mounted"
    assert namer.name(environ) == "GET /users/<int:user_id>"


# Any other WSGI app ----------------------------------------------------------------------------


def _plain(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        ("/health", "/health"),
        ("/users/42", "/users/{int}"),
        ("/users/42/", "/users/{int}/"),
        ("/users/6F1C0B52-3f0e-4c8e-9a51-2b0b4c3d9e10/avatar", "/users/{uuid}/avatar"),
        ("/blobs/0123456789abcdef0123", "/blobs/{hex}"),
        ("/blobs/0123456789abcde", "/blobs/0123456789abcde"),
        ("/s/Xy7_kQ2-vB9pL0mN4rT6", "/s/{token}"),
        ("/s/a-long-article-slug-without-digits", "/s/a-long-article-slug-without-digits"),
        ("/files/" + "z" * 65, "/files/{token}"),
        ("/v1/2024/report.pdf", "/v1/{int}/report.pdf"),
        ("//a///b//42", "/a/b/{int}"),
        ("/a/b/c/d/e/f/g/h/i/j", "/a/b/c/d/e/f/g/h/…"),
        ("/a/b/c/d/e/f/g/h/", "/a/b/c/d/e/f/g/h/"),
        ("/²³", "/²³"),
    ],
)
def test_path_normalisation(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


def test_utf8_path_from_wsgi_is_decoded() -> None:
    assert normalize_path("/café/7".encode().decode("latin-1")) == "/café/{int}"


def test_control_characters_are_replaced() -> None:
    assert normalize_path("/a\x1b[2J\n\x00b") == "/a?[2J??b"


def test_plain_app_is_named_by_method_and_normalised_path() -> None:
    tap = NamingTap(_plain)
    assert tap.namer.strategy == "path"
    assert _name_of(tap, tap, "/orders/991/lines/3", "PATCH") == "PATCH /orders/{int}/lines/{int}"


def test_paths_differing_only_by_ids_share_a_few_names() -> None:
    rng = random.Random(7)
    namer = EndpointNamer(_plain)
    templates = [
        lambda: f"/users/{rng.randrange(10**12)}",
        lambda: f"/users/{rng.randrange(10**6)}/orders/{uuid.UUID(int=rng.getrandbits(128))}",
        lambda: f"/files/{rng.getrandbits(128):032x}",
        lambda: f"/tokens/{''.join(rng.choices(string.ascii_letters, k=30))}{rng.randrange(10)}",
    ]
    names = {namer.name(_environ(rng.choice(templates)())) for _ in range(10_000)}
    assert names == {
        "GET /users/{int}",
        "GET /users/{int}/orders/{uuid}",
        "GET /files/{hex}",
        "GET /tokens/{token}",
    }


def test_hostile_paths_give_short_printable_names() -> None:
    rng = random.Random(11)
    namer = EndpointNamer(_plain)
    alphabet = "".join(map(chr, range(256)))
    for _ in range(2_000):
        environ = _environ("/")
        environ["PATH_INFO"] = "/" + "".join(rng.choices(alphabet, k=rng.randrange(1, 5_000)))
        name = namer.name(environ)
        assert len(name) <= MAX_NAME_LENGTH
        assert name.isprintable()


def test_very_long_path_is_capped() -> None:
    environ = _environ("/")
    environ["PATH_INFO"] = "/" + "/".join(["segment"] * 10_000)
    name = EndpointNamer(_plain).name(environ)
    assert name == "GET " + "/segment" * 8 + "/…"
    environ["PATH_INFO"] = "/" + "/".join(["s" * 60] * 8)
    assert len(EndpointNamer(_plain).name(environ)) == MAX_NAME_LENGTH - 6


def test_path_cache_stays_bounded() -> None:
    namer = EndpointNamer(_plain)
    for n in range(5_000):
        namer.name(_environ(f"/p{n}"))
    assert len(endpoints._path_cache) <= endpoints._PATH_CACHE_SIZE


def test_safe_name_caps_length_and_replaces_controls() -> None:
    assert safe_name("GET /a\tb") == "GET /a?b"
    capped = safe_name("x" * 500)
    assert len(capped) == MAX_NAME_LENGTH
    assert capped.endswith("…")


# User endpoint_key ------------------------------------------------------------------------------


def test_endpoint_key_wins_over_flask_rules(flask_app: Flask) -> None:
    tap = NamingTap(flask_app.wsgi_app, endpoint_key=lambda environ: "users")
    flask_app.wsgi_app = tap  # type: ignore[method-assign]
    assert _name_of(tap, flask_app, "/users/42") == "users"


def test_endpoint_key_sees_what_the_app_stored_in_the_environ() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["myapp.view"] = "views.report"
        return _plain(environ, start_response)

    tap = NamingTap(app, endpoint_key=lambda environ: str(environ["myapp.view"]))
    assert _name_of(tap, tap, "/report/2024") == "views.report"


def test_endpoint_key_result_is_made_safe() -> None:
    namer = EndpointNamer(_plain, endpoint_key=lambda environ: "evil\r\n" + "x" * 500)
    name = namer.name(_environ("/"))
    assert name.startswith("evil??x")
    assert len(name) == MAX_NAME_LENGTH


def test_failing_endpoint_key_falls_back_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(environ: WSGIEnvironment) -> str:
        raise KeyError("myapp.view")

    namer = EndpointNamer(_plain, endpoint_key=broken)
    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        assert namer.name(_environ("/users/1")) == "GET /users/{int}"
        assert namer.name(_environ("/users/2")) == "GET /users/{int}"
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None


@pytest.mark.parametrize("bad", [None, 42, b"users", ""])
def test_endpoint_key_returning_no_text_falls_back_and_logs_once(
    caplog: pytest.LogCaptureFixture, bad: object
) -> None:
    namer = EndpointNamer(_plain, endpoint_key=lambda environ: bad)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        assert namer.name(_environ("/a/1")) == "GET /a/{int}"
        assert namer.name(_environ("/a/2")) == "GET /a/{int}"
    assert len(caplog.records) == 1


def test_failing_default_naming_falls_back_to_the_path(caplog: pytest.LogCaptureFixture) -> None:
    namer = EndpointNamer(MapApp(_map()))
    environ = _environ("/users/1")
    del environ["wsgi.url_scheme"]
    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        assert namer.name(environ) == "GET /users/{int}"
    assert len(caplog.records) == 1
