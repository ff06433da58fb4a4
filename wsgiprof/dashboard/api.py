"""The protected route: a plain WSGI application for the pages, the JSON API and the downloads.

Standard library only (werkzeug is not a dependency of wsgiprof). The middleware hands it every
request whose ``PATH_INFO`` is the prefix or lies under it; the path below the prefix picks a route:

===============================================  ======  =========================================
``/``                                            GET     overview: headline, endpoints, processes
``/endpoints/<id>``                              GET     one endpoint: flamegraph, functions, files
``/endpoints/all``                               GET     flamegraph of every endpoint
``/static/<file>``                               GET     the pages' own JS and CSS
``/api/summary``                                 GET     :func:`wsgiprof.summary.build_summary`
``/api/flame.json``                              GET     flamegraph data of every endpoint
``/api/endpoints/<id>/flame.json``               GET     flamegraph data of one endpoint
``/api/profile.<fmt>``                           GET     all endpoints as a file (``?weight=``)
``/api/endpoints/<id>/profile.<fmt>``            GET     one endpoint as a file (``?weight=``)
``/api/reset``                                   POST    start a new window
``/api/runs``                                    GET     saved runs
``/api/runs``                                    POST    save the window as a run: ``{"label": ..}``
``/api/runs/<id>``                               DELETE  delete a saved run
``/api/diff?a=<run>&b=<run>``                    GET     :func:`wsgiprof.diff.compare` as JSON
``/api/diff/flame.json?a=&b=[&endpoint=<id>]``   GET     differential flamegraph data
``/api/requests.csv``                            GET     one row per profiled request
``/runs``                                        GET     saved runs: open, compare, delete, save
``/runs/<id>``                                   GET     the overview of a saved run
``/diff?a=<run>&b=<run>[&endpoint=<id>]``        GET     comparison and differential flamegraph
===============================================  ======  =========================================

Summary, flamegraph data, downloads and the endpoint pages take ``?run=<id>`` to show a saved run
instead of the current window. In a comparison, a run is named by its id, its label (the newest
run with that label) or ``current`` (the current window).

Every route needs the token: ``Authorization: Bearer <token>`` or HTTP Basic with the token as the
password. Failed attempts are throttled per client address; tokens in the query string are refused.
Reset, saving and deleting runs are state changes, so with Basic credentials (which a browser
replays by itself) they also need proof that the request came from our own pages. Errors are JSON
``{"error": "..."}``. Pages, flamegraph data and the summary are gzipped for clients that accept it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit
from wsgiref.util import application_uri

from wsgiprof.auth import LoginThrottle, basic_credentials, bearer_token, token_matches
from wsgiprof.config import Config
from wsgiprof.dashboard.flame import flame_data, frame_kind
from wsgiprof.dashboard.pages import (
    render_all,
    render_diff,
    render_endpoint,
    render_overview,
    render_runs,
)
from wsgiprof.diff import compare, diff_flame
from wsgiprof.export import FORMATS, get_exporter
from wsgiprof.model import WEIGHT_KINDS, EndpointProfile, WeightKind
from wsgiprof.stores.base import (
    RequestRow,
    RunInfo,
    RunLimitError,
    Snapshot,
    Store,
    UnknownRunError,
)
from wsgiprof.summary import SummaryCache, build_summary

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

STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""The files the pages load from ``static/``, by suffix; nothing else is served from there."""

GZIP_MIN_BYTES = 1400
"""Compressible responses smaller than this (one packet) are sent as they are."""

FLAME_CACHE_SIZE = 8
"""Flamegraph bodies kept per dashboard, keyed by what identifies their data."""

AuthScheme = Literal["bearer", "basic"]

_GET = ("GET", "HEAD")
_POST = ("POST",)
_GET_POST = ("GET", "HEAD", "POST")
_DELETE = ("DELETE",)

MAX_BODY_BYTES = 4096
"""Largest request body the route reads (a run label)."""

CSV_TYPE = "text/csv; charset=utf-8"
CSV_COLUMNS = ("timestamp", "time_utc", "endpoint", "status", "cpu_ms", "wall_ms", "pid", "host")


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    compressible: bool = False


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
        host: Callable[[], dict[str, Any]] | None = None,
        runs: Store | None = None,
        save_run: Callable[[str], RunInfo] | None = None,
        read_requests: Callable[[], list[RequestRow]] | None = None,
    ) -> None:
        self.config = config
        self.prefix = config.path
        self.engine = engine
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._read = read
        self._reset = reset
        self._runs = runs
        self._save_run = save_run if save_run is not None else (runs.save_run if runs else None)
        self._read_requests = read_requests
        if host is None:
            from wsgiprof.resources import host_reading

            host = host_reading
            host()  # the first reading of host CPU only starts the measurement
        self._host = host
        self._summary_cache = SummaryCache()
        self._flame_cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._flame_lock = threading.Lock()
        self._routes: list[tuple[re.Pattern[str], tuple[str, ...], _Handler]] = [
            (re.compile(r"/"), _GET, self._index_page),
            (re.compile(r"/endpoints/all"), _GET, self._all_page),
            (re.compile(r"/endpoints/([^/]+)"), _GET, self._endpoint_page),
            (re.compile(r"/static/([a-z0-9][a-z0-9-]*\.(?:js|css|svg))"), _GET, self._static),
            (re.compile(r"/api/summary"), _GET, self._summary),
            (re.compile(r"/api/flame\.json"), _GET, self._flame_all),
            (re.compile(r"/api/endpoints/([^/]+)/flame\.json"), _GET, self._flame_one),
            (re.compile(r"/api/profile\.(.+)"), _GET, self._download_all),
            (re.compile(r"/api/endpoints/([^/]+)/profile\.(.+)"), _GET, self._download_one),
            (re.compile(r"/api/reset"), _POST, self._reset_window),
            (re.compile(r"/api/runs"), _GET_POST, self._runs_api),
            (re.compile(r"/api/runs/([^/]+)"), _DELETE, self._delete_run),
            (re.compile(r"/api/diff"), _GET, self._diff_api),
            (re.compile(r"/api/diff/flame\.json"), _GET, self._diff_flame),
            (re.compile(r"/api/requests\.csv"), _GET, self._requests_csv),
            (re.compile(r"/runs"), _GET, self._runs_page),
            (re.compile(r"/runs/([^/]+)"), _GET, self._run_page),
            (re.compile(r"/diff"), _GET, self._diff_page),
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
        if response.compressible:
            headers.append(("Vary", "Accept-Encoding"))
            if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(environ):
                body = gzip.compress(body, compresslevel=6, mtime=0)
                headers.append(("Content-Encoding", "gzip"))
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
        source = self._source(request)
        if isinstance(source, _Response):
            return source
        snapshot, run = source
        summary = self._build_summary(snapshot, saved=run is not None)
        if run is not None:
            summary["run"] = run.to_dict()
        response = _json(HTTPStatus.OK, summary)
        response.compressible = True
        return response

    def _source(self, request: _Request) -> tuple[Snapshot, RunInfo | None] | _Response:
        """The snapshot a request asks for: the current window, or the saved run of ``?run=``."""
        values = request.query.get("run")
        if not values:
            return self._read(), None
        if len(values) != 1:
            return _error(HTTPStatus.BAD_REQUEST, "give at most one run")
        return self._load_run(values[0])

    def _load_run(self, run_id: str) -> tuple[Snapshot, RunInfo] | _Response:
        if self._runs is None:
            return _no_runs()
        info = next((run for run in self._runs.list_runs() if run.id == run_id), None)
        try:
            if info is None:
                raise UnknownRunError(run_id)
            return self._runs.load_run(run_id), info
        except UnknownRunError:
            return _error(HTTPStatus.NOT_FOUND, f"no saved run with id {_clip(run_id)!r}")

    def _build_summary(
        self,
        snapshot: Snapshot,
        top: int = 10,
        *,
        function_totals: bool = True,
        saved: bool = False,
    ) -> dict[str, Any]:
        host: dict[str, Any] | None = None
        if not saved:
            try:
                host = self._host()
            except Exception:
                host = None
        return build_summary(
            snapshot,
            engine=self.engine,
            sample_rate=self.config.sample_rate,
            top=top,
            host=host,
            function_totals=function_totals,
            cache=self._summary_cache,
        )

    def _static(self, request: _Request, match: re.Match[str]) -> _Response:
        name = match.group(1)
        resource = files("wsgiprof.dashboard").joinpath("static").joinpath(name)
        suffix = name[name.rindex(".") :]
        if suffix not in STATIC_TYPES or not resource.is_file():
            return _error(HTTPStatus.NOT_FOUND, "no such static file")
        return _Response(
            HTTPStatus.OK,
            resource.read_bytes(),
            [("Content-Type", STATIC_TYPES[suffix])],
            compressible=True,
        )

    def _flame_all(self, request: _Request, match: re.Match[str]) -> _Response:
        source = self._source(request)
        if isinstance(source, _Response):
            return source
        snapshot, run = source
        profiles = sorted(snapshot.endpoints.values(), key=lambda p: p.name)
        key = ("all", run.id if run else None, *(_fingerprint(p) for p in profiles))
        return self._flame(key, profiles, "all endpoints", by_endpoint=True)

    def _flame_one(self, request: _Request, match: re.Match[str]) -> _Response:
        source = self._source(request)
        if isinstance(source, _Response):
            return source
        snapshot, run = source
        endpoint = match.group(1)
        profile = _find(snapshot, endpoint)
        if profile is None:
            return _unknown_endpoint(endpoint)
        key = ("one", run.id if run else None, _fingerprint(profile))
        return self._flame(key, [profile], profile.name)

    def _flame(
        self,
        key: tuple[object, ...],
        profiles: list[EndpointProfile],
        name: str,
        *,
        by_endpoint: bool = False,
    ) -> _Response:
        with self._flame_lock:
            body = self._flame_cache.get(key)
            if body is not None:
                self._flame_cache.move_to_end(key)
        if body is None:
            data = flame_data(profiles, name=name, by_endpoint=by_endpoint)
            body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")
            with self._flame_lock:
                self._flame_cache[key] = body
                while len(self._flame_cache) > FLAME_CACHE_SIZE:
                    self._flame_cache.popitem(last=False)
        return _Response(HTTPStatus.OK, body, [("Content-Type", JSON_TYPE)], compressible=True)

    def _reset_window(self, request: _Request, match: re.Match[str]) -> _Response:
        refused = self._state_change_refused(request, "reset")
        if refused is not None:
            return refused
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
        source = self._source(request)
        if isinstance(source, _Response):
            return source
        snapshot, run = source
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
        if run is not None:
            slug = f"{_slug(run.label) or 'run'}-{slug}"
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
        source = self._source(request)
        if isinstance(source, _Response):
            return source
        return self._overview(request, *source)

    def _overview(self, request: _Request, snapshot: Snapshot, run: RunInfo | None) -> _Response:
        # The overview shows each endpoint's hottest function by self CPU only, so it skips the
        # total CPU per function, the part of the summary that grows with stack depth.
        summary = self._build_summary(snapshot, top=1, function_totals=False, saved=run is not None)
        base = _base_href(request.environ, self.prefix)
        return _html(render_overview(summary, base, run))

    def _endpoint_page(self, request: _Request, match: re.Match[str]) -> _Response:
        endpoint = match.group(1)
        source = self._source(request)
        if isinstance(source, _Response):
            return source
        snapshot, run = source
        profile = _find(snapshot, endpoint)
        if profile is None:
            return _unknown_endpoint(endpoint)
        total_cpu = sum(p.cpu for p in snapshot.endpoints.values())
        alone = Snapshot(window_start=0.0, window_end=0.0, endpoints={profile.name: profile})
        entry = build_summary(
            alone, engine=self.engine, sample_rate=1.0, top=0, function_totals=False
        )["endpoints"][0]
        entry["cpu_share"] = profile.cpu / total_cpu if total_cpu > 0 else 0.0
        base = _base_href(request.environ, self.prefix)
        return _html(render_endpoint(entry, base, run))

    def _all_page(self, request: _Request, match: re.Match[str]) -> _Response:
        source = self._source(request)
        if isinstance(source, _Response):
            return source
        snapshot, run = source
        summary = self._build_summary(snapshot, top=0, function_totals=False, saved=run is not None)
        base = _base_href(request.environ, self.prefix)
        return _html(render_all(summary, base, run))

    # -- saved runs, comparisons and request rows ----------------------------------------------

    def _state_change_refused(self, request: _Request, what: str) -> _Response | None:
        if request.scheme == "basic" and not _same_origin(request.environ):
            return _error(
                HTTPStatus.FORBIDDEN,
                f"{what} with Basic credentials must come from this dashboard's own pages "
                "(same Origin or Sec-Fetch-Site: same-origin); scripts should send "
                "'Authorization: Bearer <token>'",
            )
        return None

    def _runs_api(self, request: _Request, match: re.Match[str]) -> _Response:
        if self._runs is None:
            return _no_runs()
        if request.method != "POST":
            runs = [run.to_dict() for run in self._runs.list_runs()]
            return _json(HTTPStatus.OK, {"runs": runs})
        refused = self._state_change_refused(request, "saving a run")
        if refused is not None:
            return refused
        label = _label_from_body(request.environ)
        if isinstance(label, _Response):
            return label
        assert self._save_run is not None
        try:
            info = self._save_run(label)
        except ValueError as exc:
            return _error(HTTPStatus.BAD_REQUEST, str(exc))
        except RunLimitError as exc:
            return _error(HTTPStatus.CONFLICT, str(exc))
        except Exception as exc:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, f"the store could not save it: {exc}")
        return _json(HTTPStatus.CREATED, {"run": info.to_dict()})

    def _delete_run(self, request: _Request, match: re.Match[str]) -> _Response:
        if self._runs is None:
            return _no_runs()
        refused = self._state_change_refused(request, "deleting a run")
        if refused is not None:
            return refused
        run_id = match.group(1)
        if not self._runs.delete_run(run_id):
            return _error(HTTPStatus.NOT_FOUND, f"no saved run with id {_clip(run_id)!r}")
        return _json(HTTPStatus.OK, {"deleted": run_id})

    def _resolve(self, reference: str) -> tuple[Snapshot, str] | _Response:
        """A run named by id, label (the newest with it) or ``current``; and its display name."""
        if reference == "current":
            return self._read(), "current window"
        if self._runs is None:
            return _no_runs()
        runs = self._runs.list_runs()
        found = next((run for run in runs if run.id == reference), None)
        if found is None:
            found = next((run for run in reversed(runs) if run.label == reference), None)
        if found is None:
            return _error(HTTPStatus.NOT_FOUND, f"no saved run {_clip(reference)!r}")
        try:
            return self._runs.load_run(found.id), found.label
        except UnknownRunError:
            return _error(HTTPStatus.NOT_FOUND, f"no saved run {_clip(reference)!r}")

    def _pair(
        self, request: _Request
    ) -> tuple[tuple[Snapshot, str], tuple[Snapshot, str], str, str] | _Response:
        references = []
        for name in ("a", "b"):
            values = request.query.get(name, [])
            if len(values) != 1 or not values[0]:
                return _error(
                    HTTPStatus.BAD_REQUEST,
                    "give two runs: ?a=<run>&b=<run> (an id, a label, or 'current')",
                )
            references.append(values[0])
        a = self._resolve(references[0])
        if isinstance(a, _Response):
            return a
        b = self._resolve(references[1])
        if isinstance(b, _Response):
            return b
        return a, b, references[0], references[1]

    def _diff_api(self, request: _Request, match: re.Match[str]) -> _Response:
        pair = self._pair(request)
        if isinstance(pair, _Response):
            return pair
        (snap_a, label_a), (snap_b, label_b), _, _ = pair
        diff = compare(snap_a.endpoints, snap_b.endpoints, a_label=label_a, b_label=label_b)
        response = _json(HTTPStatus.OK, diff.to_dict())
        response.compressible = True
        return response

    def _diff_flame(self, request: _Request, match: re.Match[str]) -> _Response:
        pair = self._pair(request)
        if isinstance(pair, _Response):
            return pair
        (snap_a, label_a), (snap_b, label_b), _, _ = pair
        endpoint = request.query.get("endpoint", [None])[0]
        profiles_a = sorted(snap_a.endpoints.values(), key=lambda p: p.name)
        profiles_b = sorted(snap_b.endpoints.values(), key=lambda p: p.name)
        name = "all endpoints"
        if endpoint is not None:
            profiles_a = [p for p in profiles_a if p.id == endpoint]
            profiles_b = [p for p in profiles_b if p.id == endpoint]
            if not profiles_a and not profiles_b:
                return _unknown_endpoint(endpoint)
            name = (profiles_b or profiles_a)[0].name
        data = diff_flame(
            profiles_a,
            profiles_b,
            name=name,
            a_label=label_a,
            b_label=label_b,
            by_endpoint=endpoint is None,
            kind=frame_kind,
        )
        response = _json(HTTPStatus.OK, data)
        response.compressible = True
        return response

    def _requests_csv(self, request: _Request, match: re.Match[str]) -> _Response:
        if self._read_requests is None:
            return _error(HTTPStatus.NOT_FOUND, "request rows are not recorded here")
        body = requests_csv(self._read_requests()).encode("utf-8")
        return _Response(
            HTTPStatus.OK,
            body,
            [
                ("Content-Type", CSV_TYPE),
                ("Content-Disposition", 'attachment; filename="requests.csv"'),
            ],
            compressible=True,
        )

    def _runs_page(self, request: _Request, match: re.Match[str]) -> _Response:
        if self._runs is None:
            return _no_runs()
        base = _base_href(request.environ, self.prefix)
        return _html(render_runs(self._runs.list_runs(), base))

    def _run_page(self, request: _Request, match: re.Match[str]) -> _Response:
        loaded = self._load_run(match.group(1))
        if isinstance(loaded, _Response):
            return loaded
        return self._overview(request, *loaded)

    def _diff_page(self, request: _Request, match: re.Match[str]) -> _Response:
        pair = self._pair(request)
        if isinstance(pair, _Response):
            return pair
        (snap_a, label_a), (snap_b, label_b), ref_a, ref_b = pair
        diff = compare(snap_a.endpoints, snap_b.endpoints, a_label=label_a, b_label=label_b)
        endpoint = request.query.get("endpoint", [None])[0]
        scope = None
        data = diff.to_dict()
        if endpoint is not None:
            change = next((c for c in diff.endpoints if c.id == endpoint), None)
            if change is None:
                return _unknown_endpoint(endpoint)
            scope = {"id": endpoint, "name": change.name}
            data["endpoints"] = [e for e in data["endpoints"] if e["id"] == endpoint]
            data["functions"] = [f for f in data["functions"] if f["endpoint_id"] == endpoint]
        base = _base_href(request.environ, self.prefix)
        return _html(render_diff(data, base, ref_a, ref_b, scope))


def requests_csv(rows: Iterable[RequestRow]) -> str:
    """``requests.csv``: a header and one line per row. Endpoint names that a spreadsheet would
    read as a formula (starting with ``=``, ``+``, ``-``, ``@``) get a leading apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        endpoint = "'" + row.endpoint if row.endpoint[:1] in ("=", "+", "-", "@") else row.endpoint
        writer.writerow(
            (
                f"{row.timestamp:.3f}",
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row.timestamp))
                + f".{int(row.timestamp % 1 * 1000):03d}Z",
                endpoint,
                row.status,
                f"{row.cpu_ms:.3f}",
                f"{row.wall_ms:.3f}",
                row.pid,
                row.host,
            )
        )
    return out.getvalue()


def _label_from_body(environ: WSGIEnvironment) -> str | _Response:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > MAX_BODY_BYTES:
        return _error(HTTPStatus.BAD_REQUEST, f"send a JSON body of at most {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    except ValueError:
        return _error(HTTPStatus.BAD_REQUEST, 'send JSON: {"label": "baseline"}')
    label = body.get("label") if isinstance(body, dict) else None
    if not isinstance(label, str):
        return _error(HTTPStatus.BAD_REQUEST, 'send JSON: {"label": "baseline"}')
    return label


def _no_runs() -> _Response:
    return _error(HTTPStatus.NOT_FOUND, "saved runs are not available on this route")


def _fingerprint(profile: EndpointProfile) -> tuple[object, ...]:
    """What changes whenever an endpoint gets a new sampled request (see SummaryCache)."""
    return (
        profile.name,
        profile.requests,
        profile.sampled,
        profile.cpu,
        profile.wall,
        len(profile.stacks),
        profile.overflow_samples,
    )


def _accepts_gzip(environ: WSGIEnvironment) -> bool:
    accepted = environ.get("HTTP_ACCEPT_ENCODING", "")
    for part in accepted.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


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


def _html(page: str) -> _Response:
    return _Response(
        HTTPStatus.OK, page.encode("utf-8"), [("Content-Type", HTML_TYPE)], compressible=True
    )


def _base_href(environ: WSGIEnvironment, prefix: str) -> str:
    return quote(environ.get("SCRIPT_NAME", "").rstrip("/") + prefix)
