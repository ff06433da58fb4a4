"""The protected route: a plain WSGI application for the JSON API, the downloads and a basic view.

Standard library only (werkzeug is not a dependency of wsgiprof). The middleware hands it every
request whose ``PATH_INFO`` is the prefix or lies under it; the path below the prefix picks a route:

===============================================  ======  =========================================
``/``                                            GET     basic HTML view: endpoints, downloads
``/endpoints/<id>``                              GET     basic HTML view of one endpoint
``/api/summary``                                 GET     :func:`wsgiprof.summary.build_summary`
``/api/profile.<fmt>``                           GET     all endpoints as a file (``?weight=``)
``/api/endpoints/<id>/profile.<fmt>``            GET     one endpoint as a file (``?weight=``)
``/api/reset``                                   POST    start a new window
===============================================  ======  =========================================

Every route needs the token: ``Authorization: Bearer <token>`` or HTTP Basic with the token as the
password. Failed attempts are throttled per client address; tokens in the query string are refused.
Reset is a state change, so with Basic credentials (which a browser replays by itself) it also needs
proof that the request came from our own pages. Errors are JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit
from wsgiref.util import application_uri

from wsgiprof.auth import LoginThrottle, basic_credentials, bearer_token, token_matches
from wsgiprof.config import Config
from wsgiprof.export import FORMATS, get_exporter
from wsgiprof.model import WEIGHT_KINDS, EndpointProfile, WeightKind
from wsgiprof.stores.base import Snapshot
from wsgiprof.summary import build_summary

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
"""Sent with every response of the route, errors included."""

WWW_AUTHENTICATE = 'Basic realm="wsgiprof", charset="UTF-8"'

TOKEN_PARAMETERS = frozenset(
    {
        "token",
        "access_token",
        "auth",
        "auth_token",
        "authorization",
        "bearer",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "jwt",
        "id_token",
        "wsgiprof_token",
    }
)
"""Query parameter names (compared lower-case, ``-`` as ``_``) refused as a misplaced token."""

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"

AuthScheme = Literal["bearer", "basic"]

_GET = ("GET", "HEAD")
_POST = ("POST",)


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Request:
    environ: WSGIEnvironment
    method: str
    path: str
    query: dict[str, list[str]]
    scheme: AuthScheme


_Handler = Callable[[_Request, re.Match[str]], _Response]


class Dashboard:
    """The WSGI application of the protected route, mounted by the middleware under ``config.path``.

    ``read`` returns the store's current window (called once per request that needs data),
    ``reset`` starts a new window and returns its start time, ``engine`` names the profiling engine
    for the summary. ``throttle`` limits failed logins per client address (five a minute by
    default). Without ``config.token`` there is no route: :meth:`handles` is false and every request
    gets 404.

    Example::

        store = MemoryStore()
        dashboard = Dashboard(config, read=store.read, reset=store.reset, engine="pyinstrument")
        if dashboard.handles(environ.get("PATH_INFO", "")):
            return dashboard(environ, start_response)
    """

    def __init__(
        self,
        config: Config,
        *,
        read: Callable[[], Snapshot],
        reset: Callable[[], float],
        engine: str,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.config = config
        self.prefix = config.path
        self.engine = engine
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._read = read
        self._reset = reset
        self._routes: list[tuple[re.Pattern[str], tuple[str, ...], _Handler]] = [
            (re.compile(r"/"), _GET, self._index_page),
            (re.compile(r"/endpoints/([^/]+)"), _GET, self._endpoint_page),
            (re.compile(r"/api/summary"), _GET, self._summary),
            (re.compile(r"/api/profile\.(.+)"), _GET, self._download_all),
            (re.compile(r"/api/endpoints/([^/]+)/profile\.(.+)"), _GET, self._download_one),
            (re.compile(r"/api/reset"), _POST, self._reset_window),
        ]

    def handles(self, path: str) -> bool:
        """Whether a request for ``path`` (its ``PATH_INFO``) belongs to this route."""
        if self.config.token is None:
            return False
        return path == self.prefix or path.startswith(self.prefix + "/")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self._respond(environ)
        headers = [*response.headers, *SECURITY_HEADERS]
        body = response.body
        if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD":
            body = b""
        else:
            headers.append(("Content-Length", str(len(body))))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [body]

    def _respond(self, environ: WSGIEnvironment) -> _Response:
        path: str = environ.get("PATH_INFO", "")
        expected = self.config.token
        if expected is None or not self.handles(path):
            return _error(HTTPStatus.NOT_FOUND, "not found")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        misplaced = sorted(name for name in query if _is_token_parameter(name))
        if misplaced:
            return _error(
                HTTPStatus.BAD_REQUEST,
                "tokens are only accepted in the Authorization header (Bearer, or Basic with the "
                "token as password), never in the URL; remove the query parameter "
                f"{_clip(misplaced[0])!r} and consider the token exposed",
            )
        client = environ.get("REMOTE_ADDR") or "unknown"
        wait = self.throttle.retry_after(client)
        if wait is not None:
            return _error(
                HTTPStatus.TOO_MANY_REQUESTS,
                "too many failed attempts from this address; try again later",
                [("Retry-After", str(max(1, math.ceil(wait))))],
            )
        scheme = self._authenticate(environ, expected)
        if scheme is None:
            if environ.get("HTTP_AUTHORIZATION"):
                self.throttle.failure(client)
                message = "invalid credentials"
            else:
                message = (
                    "authentication required: send 'Authorization: Bearer <token>', "
                    "or HTTP Basic with any user name and the token as password"
                )
            return _error(
                HTTPStatus.UNAUTHORIZED, message, [("WWW-Authenticate", WWW_AUTHENTICATE)]
            )
        method = environ.get("REQUEST_METHOD", "GET").upper()
        below = path[len(self.prefix) :]
        if not below:
            if method not in _GET:
                return _method_not_allowed(_GET)
            location = application_uri(environ).rstrip("/") + quote(self.prefix + "/")
            return _Response(HTTPStatus.PERMANENT_REDIRECT, headers=[("Location", location)])
        request = _Request(environ, method, below, query, scheme)
        for pattern, methods, handler in self._routes:
            match = pattern.fullmatch(below)
            if match is not None:
                if method not in methods:
                    return _method_not_allowed(methods)
                return handler(request, match)
        return _error(HTTPStatus.NOT_FOUND, "no such page or API under the route")

    @staticmethod
    def _authenticate(environ: WSGIEnvironment, expected: str) -> AuthScheme | None:
        token = bearer_token(environ)
        if token is not None:
            return "bearer" if token_matches(token, expected) else None
        credentials = basic_credentials(environ)
        if credentials is not None and token_matches(credentials[1], expected):
            return "basic"
        return None

    def _summary(self, request: _Request, match: re.Match[str]) -> _Response:
        return _json(HTTPStatus.OK, self._build_summary(self._read()))

    def _build_summary(self, snapshot: Snapshot, top: int = 10) -> dict[str, Any]:
        return build_summary(
            snapshot, engine=self.engine, sample_rate=self.config.sample_rate, top=top
        )

    def _reset_window(self, request: _Request, match: re.Match[str]) -> _Response:
        if request.scheme == "basic" and not _same_origin(request.environ):
            return _error(
                HTTPStatus.FORBIDDEN,
                "reset with Basic credentials must come from this dashboard's own pages "
                "(same Origin or Sec-Fetch-Site: same-origin); scripts should send "
                "'Authorization: Bearer <token>'",
            )
        start = self._reset()
        return _json(HTTPStatus.OK, {"window": {"start": start}})

    def _download_all(self, request: _Request, match: re.Match[str]) -> _Response:
        return self._download(request, None, match.group(1))

    def _download_one(self, request: _Request, match: re.Match[str]) -> _Response:
        return self._download(request, match.group(1), match.group(2))

    def _download(self, request: _Request, endpoint: str | None, fmt: str) -> _Response:
        if fmt not in FORMATS:
            return _error(
                HTTPStatus.BAD_REQUEST,
                f"unknown format {_clip(fmt)!r}: expected one of {', '.join(FORMATS)}",
            )
        values = request.query.get("weight", ["cpu"])
        if len(values) != 1 or values[0] not in WEIGHT_KINDS:
            return _error(
                HTTPStatus.BAD_REQUEST,
                f"weight must be one of {', '.join(WEIGHT_KINDS)} (default cpu)",
            )
        kind: WeightKind = "wall" if values[0] == "wall" else "cpu"
        snapshot = self._read()
        profiles: list[EndpointProfile]
        if endpoint is None:
            profiles = sorted(snapshot.endpoints.values(), key=lambda p: p.name)
            slug = "all-endpoints"
        else:
            profile = _find(snapshot, endpoint)
            if profile is None:
                return _unknown_endpoint(endpoint)
            profiles = [profile]
            slug = _slug(profile.name) or profile.id
        exporter = get_exporter(fmt)
        return _Response(
            HTTPStatus.OK,
            exporter.export(profiles, kind),
            [
                ("Content-Type", exporter.media_type),
                ("Content-Disposition", f'attachment; filename="{slug}.{fmt}"'),
            ],
        )

    def _index_page(self, request: _Request, match: re.Match[str]) -> _Response:
        summary = self._build_summary(self._read())
        base = _base_href(request.environ, self.prefix)
        return _html(_render_index(summary, base))

    def _endpoint_page(self, request: _Request, match: re.Match[str]) -> _Response:
        endpoint = match.group(1)
        summary = self._build_summary(self._read(), top=30)
        entry = next((e for e in summary["endpoints"] if e["id"] == endpoint), None)
        if entry is None:
            return _unknown_endpoint(endpoint)
        base = _base_href(request.environ, self.prefix)
        return _html(_render_endpoint(summary, entry, base))


def _is_token_parameter(name: str) -> bool:
    return name.strip().lower().replace("-", "_") in TOKEN_PARAMETERS


def _find(snapshot: Snapshot, endpoint: str) -> EndpointProfile | None:
    return next((p for p in snapshot.endpoints.values() if p.id == endpoint), None)


def _slug(name: str) -> str:
    """A file-name-safe ASCII slug of an endpoint name: ``GET /users/<id>`` -> ``get-users-id``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80].rstrip("-")


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _json(status: int, data: object, headers: Sequence[tuple[str, str]] = ()) -> _Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _Response(status, body, [("Content-Type", JSON_TYPE), *headers])


def _error(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> _Response:
    return _json(status, {"error": message}, headers)


def _unknown_endpoint(endpoint: str) -> _Response:
    return _error(
        HTTPStatus.NOT_FOUND, f"no endpoint with id {_clip(endpoint)!r} in the current window"
    )


def _method_not_allowed(methods: Sequence[str]) -> _Response:
    allowed = ", ".join(methods)
    return _error(
        HTTPStatus.METHOD_NOT_ALLOWED, f"method not allowed; use {allowed}", [("Allow", allowed)]
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path
        or parts.query
        or parts.fragment
    ):
        return None
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme]


def _same_origin(environ: WSGIEnvironment) -> bool:
    """Whether the browser says this request came from a page of this same origin.

    ``Sec-Fetch-Site`` is authoritative when present; otherwise ``Origin`` must equal the
    request's own scheme and host (default ports normalised)."""
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None:
        return bool(site.strip().lower() == "same-origin")
    origin = environ.get("HTTP_ORIGIN")
    if not origin:
        return False
    host = environ.get("HTTP_HOST") or (
        f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    )
    ours = _origin_key(f"{environ.get('wsgi.url_scheme', 'http')}://{host}")
    theirs = _origin_key(origin.strip())
    return theirs is not None and theirs == ours


# The basic HTML view. The full pages (endpoint table, flamegraph) come later and replace this.

_e = html.escape


def _html(page: str) -> _Response:
    return _Response(HTTPStatus.OK, page.encode("utf-8"), [("Content-Type", HTML_TYPE)])


def _base_href(environ: WSGIEnvironment, prefix: str) -> str:
    return quote(environ.get("SCRIPT_NAME", "").rstrip("/") + prefix)


def _page(title: str, body: str, base: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n</head>\n<body>\n"
        "<header>\n<p><strong>wsgiprof: basic view.</strong> A plain listing until the full "
        "dashboard pages exist; the data is also at "
        f'<a href="{_e(base)}/api/summary">api/summary</a> (JSON).</p>\n'
        f"</header>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def _format_time(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _number(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(str(value))


def _download_links(href: str, kind: WeightKind) -> str:
    links = " ".join(
        f'<a href="{_e(href)}/profile.{_e(fmt)}?weight={kind}">{_e(fmt)}</a>' for fmt in FORMATS
    )
    return f"{kind}: {links}"


def _render_index(summary: dict[str, Any], base: str) -> str:
    totals = summary["totals"]
    rows = []
    for entry in summary["endpoints"]:
        ident = quote(entry["id"], safe="")
        rows.append(
            "<tr>"
            f'<td><a href="{_e(base)}/endpoints/{_e(ident)}">{_e(entry["name"])}</a></td>'
            f"<td>{_number(entry['requests'])}</td>"
            f"<td>{_number(entry['sampled'])}</td>"
            f"<td>{_number(entry['errors'])}</td>"
            f"<td>{_number(entry['cpu_seconds'])}</td>"
            f"<td>{_number(entry['wall_seconds'])}</td>"
            f"<td>{_number(entry['cpu_share'] * 100, 1)}%</td>"
            f"<td>{_download_links(f'{base}/api/endpoints/{ident}', 'cpu')}</td>"
            "</tr>\n"
        )
    table = (
        "<table>\n<caption>Endpoints by share of sampled CPU</caption>\n<thead><tr>"
        '<th scope="col">Endpoint</th><th scope="col">Requests</th>'
        '<th scope="col">Sampled</th><th scope="col">Errors</th><th scope="col">CPU s</th>'
        '<th scope="col">Wall s</th><th scope="col">CPU share</th>'
        '<th scope="col">Downloads</th></tr></thead>\n'
        f"<tbody>\n{''.join(rows)}</tbody>\n</table>\n"
        if rows
        else "<p>No requests recorded in this window yet.</p>\n"
    )
    processes = "".join(
        f"<li>{_e(str(p['host']))} pid {_number(p['pid'])}: CPU {_number(p['cpu_percent'], 1)}%, "
        f"RSS {_number(p['rss_bytes'])} bytes, threads {_number(p['threads'])}</li>\n"
        for p in summary["processes"]
    )
    body = (
        "<h1>Endpoints</h1>\n"
        f"<p>Engine {_e(str(summary['engine']))}, sample rate {_number(summary['sample_rate'])}; "
        f"window from {_e(_format_time(summary['window']['start']))} "
        f"to {_e(_format_time(summary['window']['end']))}. "
        f"{_number(totals['requests'])} requests, {_number(totals['sampled'])} sampled, "
        f"{_number(totals['cpu_seconds'])} CPU s, {_number(totals['wall_seconds'])} wall s.</p>\n"
        f"{table}"
        f"<h2>All endpoints</h2>\n<p>{_download_links(f'{base}/api', 'cpu')}</p>\n"
        f"<p>{_download_links(f'{base}/api', 'wall')}</p>\n"
        + (f"<h2>Processes</h2>\n<ul>\n{processes}</ul>\n" if processes else "")
    )
    return _page("wsgiprof: endpoints (basic view)", body, base)


def _render_endpoint(summary: dict[str, Any], entry: dict[str, Any], base: str) -> str:
    ident = quote(entry["id"], safe="")
    facts = [
        ("Requests", _number(entry["requests"])),
        ("Sampled", _number(entry["sampled"])),
        ("Errors", _number(entry["errors"])),
        ("CPU seconds", _number(entry["cpu_seconds"])),
        ("Wall seconds", _number(entry["wall_seconds"])),
        ("CPU share", f"{_number(entry['cpu_share'] * 100, 1)}%"),
        ("Mean CPU ms", _number(entry["mean_cpu_ms"])),
        ("Mean wall ms", _number(entry["mean_wall_ms"])),
        ("p50 wall ms", _number(entry["p50_wall_ms"])),
        ("p95 wall ms", _number(entry["p95_wall_ms"])),
        ("CPU / wall", _number(entry["cpu_wall_ratio"])),
        ("Off-CPU seconds", _number(entry["off_cpu_seconds"])),
        ("Overflow samples", _number(entry["overflow_samples"])),
    ]
    facts_html = "".join(f"<dt>{_e(label)}</dt><dd>{value}</dd>\n" for label, value in facts)
    rows = "".join(
        "<tr>"
        f"<td>{_e(fn['name'])}{' (off-CPU)' if fn['off_cpu'] else ''}</td>"
        f'<td title="{_e(fn["path"])}">{_e(fn["file"])}:{_number(fn["line"])}</td>'
        f"<td>{_number(fn['self_cpu_seconds'])}</td>"
        f"<td>{_number(fn['total_cpu_seconds'])}</td>"
        "</tr>\n"
        for fn in entry["top_functions"]
    )
    functions = (
        "<table>\n<caption>Top functions by self CPU</caption>\n<thead><tr>"
        '<th scope="col">Function</th><th scope="col">File</th>'
        '<th scope="col">Self CPU s</th><th scope="col">Total CPU s</th></tr></thead>\n'
        f"<tbody>\n{rows}</tbody>\n</table>\n"
        if rows
        else "<p>No profiled stacks for this endpoint yet.</p>\n"
    )
    href = f"{base}/api/endpoints/{ident}"
    body = (
        f'<p><a href="{_e(base)}/">All endpoints</a></p>\n'
        f"<h1>{_e(entry['name'])}</h1>\n<dl>\n{facts_html}</dl>\n{functions}"
        f"<h2>Downloads</h2>\n<p>{_download_links(href, 'cpu')}</p>\n"
        f"<p>{_download_links(href, 'wall')}</p>\n"
    )
    return _page(f"wsgiprof: {entry['name']} (basic view)", body, base)
