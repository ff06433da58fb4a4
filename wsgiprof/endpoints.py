"""Endpoint naming: turn a finished request into a short, stable name such as
``GET /users/<int:user_id>``.

Profiles are added up per endpoint, so the name decides what is compared with what. A name per
raw URL would scatter ``/users/1``, ``/users/2``… into thousands of one-request buckets; a route
template groups them the way the code is organised. The strategy is chosen once, from the wrapped
application, so the per-request cost stays small:

1. a user ``endpoint_key(environ) -> str`` wins over everything;
2. a Flask application: its matched rule, recorded by a ``request_started`` receiver, so the user
   writes nothing extra;
3. an application routed by a werkzeug :class:`~werkzeug.routing.Map`: the rule it matches;
4. anything else: the method and a normalised ``PATH_INFO`` (``/orders/{int}/items/{uuid}``).

Requests that match no route share one bucket per method, ``GET [unmatched]``. Names never hold
control characters and never exceed :data:`MAX_NAME_LENGTH` characters. The cap on the number of
distinct endpoints lives in :mod:`wsgiprof.aggregate`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.routing import Map, MapAdapter

__all__ = [
    "ENVIRON_KEY",
    "MAX_NAME_LENGTH",
    "UNMATCHED",
    "EndpointNamer",
    "normalize_path",
    "safe_name",
]

logger = logging.getLogger("wsgiprof")

ENVIRON_KEY = "wsgiprof.endpoint"
"""Where the Flask receiver leaves the matched rule template (``None`` when nothing matched)."""

UNMATCHED = "[unmatched]"
"""Stands for the route of a request that matched none (404, 405, strict-slash redirects)."""

MAX_NAME_LENGTH = 200
"""Longest endpoint name kept; longer names are cut and end with ``…``."""

MAX_SEGMENTS = 8
"""Path segments kept by :func:`normalize_path`; deeper paths end with ``/…``."""

_MISSING = object()
_UNWRAP_DEPTH = 8
_METHODS = frozenset(
    {
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "QUERY",
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
        "PURGE",
    }
)  # fmt: skip
_OTHER_METHOD = "OTHER"
_BIND_KEYS = (
    "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme", "SCRIPT_NAME",
    "HTTP_CONNECTION", "HTTP_UPGRADE",
)  # fmt: skip
_ADAPTER_CACHE_SIZE = 64

_SLASHES = re.compile(r"//+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_HEX = re.compile(r"[0-9A-Fa-f]{16,}")
_TOKEN = re.compile(r"(?=.*[0-9])[A-Za-z0-9_.~+=:-]{20,}|.{65,}", re.DOTALL)
_MAX_PATH_LENGTH = MAX_NAME_LENGTH - 10
_PATH_CACHE_SIZE = 1024
_PATH_CACHE_KEY_LENGTH = 256
_path_cache: dict[str, str] = {}


def safe_name(text: str) -> str:
    """``text`` with every unprintable character (controls, line and paragraph separators,
    invisible formatting) replaced by ``?``, at most :data:`MAX_NAME_LENGTH`
    characters long. Cheap when there is nothing to do, which is the common case.

    Example::

        safe_name("GET /a\\x1b[31m")  # 'GET /a?[31m'
    """
    if not text.isprintable():
        text = "".join(char if char.isprintable() else "?" for char in text)
    if len(text) > MAX_NAME_LENGTH:
        text = text[: MAX_NAME_LENGTH - 1] + "…"
    return text


def normalize_path(path: str) -> str:
    """A URL path with its variable parts replaced, so that requests for different records of the
    same resource share one name.

    Whole segments made of digits become ``{int}``, UUIDs ``{uuid}``, hex strings of 16 characters
    or more ``{hex}``, and long random-looking tokens (20 characters or more with a digit among
    them, or any segment over 64 characters) ``{token}``. Repeated slashes collapse to one, at
    most :data:`MAX_SEGMENTS` segments are kept, and the result is safe to store (see
    :func:`safe_name`) and at most 190 characters long. ``PATH_INFO`` arrives as latin-1 text
    (PEP 3333); UTF-8 paths are decoded back to readable text.

    Example::

        normalize_path("/users/42//orders/6f1c0b52-3f0e-4c8e-9a51-2b0b4c3d9e10")
        # '/users/{int}/orders/{uuid}'
    """
    cached = _path_cache.get(path)
    if cached is not None:
        return cached
    result = _normalize(path)
    if len(path) <= _PATH_CACHE_KEY_LENGTH:
        if len(_path_cache) >= _PATH_CACHE_SIZE:
            _path_cache.clear()
        _path_cache[path] = result
    return result


def _normalize(path: str) -> str:
    if not path.isascii():
        with contextlib.suppress(UnicodeError):
            path = path.encode("latin-1").decode("utf-8")
    if "//" in path:
        path = _SLASHES.sub("/", path)
    parts = path.split("/", MAX_SEGMENTS + 1)
    if len(parts) > MAX_SEGMENTS + 1 and parts[-1]:
        parts[-1] = "…"
    for index, part in enumerate(parts):
        if part.isdigit():
            if part.isascii():
                parts[index] = "{int}"
        elif len(part) >= 16:
            if len(part) == 36 and _UUID.fullmatch(part):
                parts[index] = "{uuid}"
            elif _HEX.fullmatch(part):
                parts[index] = "{hex}"
            elif len(part) >= 20 and _TOKEN.fullmatch(part):
                parts[index] = "{token}"
    normalized = "/".join(parts) or "/"
    if len(normalized) > _MAX_PATH_LENGTH:
        normalized = normalized[: _MAX_PATH_LENGTH - 1] + "…"
    return safe_name(normalized)


def _method(environ: WSGIEnvironment) -> str:
    method = environ.get("REQUEST_METHOD", "GET")
    return method if method in _METHODS else _OTHER_METHOD


_flask_receiver: Callable[..., None] | None = None


def _connect_flask(flask_app: Any) -> None:
    """Connect the ``request_started`` receiver that copies the matched rule into the environ.

    Flask empties ``environ["werkzeug.request"]`` when the request context pops, before the
    middleware gets control back, so the template must be copied out while the request is live.
    The signal is sent before ``before_request`` handlers run, so their aborts are named too. One
    module-level receiver serves every app; connecting it twice to one app is a no-op.
    """
    global _flask_receiver  # noqa: PLW0603
    from flask.signals import request_started

    if _flask_receiver is None:
        from flask import request

        current_request = cast(Any, request)._get_current_object

        def record_rule(sender: object, **extra: object) -> None:
            live = current_request()
            rule = live.url_rule
            live.environ[ENVIRON_KEY] = None if rule is None else rule.rule

        _flask_receiver = record_rule
    request_started.connect(_flask_receiver, sender=flask_app, weak=False)


def _candidates(app: object, *, through_middleware: bool) -> list[object]:
    """The wrapped application, then what it wraps: the owner of a bound method (``__self__``)
    and, with ``through_middleware``, the ``.app`` of werkzeug-style middleware (``ProxyFix``)."""
    chain: list[object] = []
    current: object | None = app
    while current is not None and len(chain) < _UNWRAP_DEPTH:
        if any(current is seen for seen in chain):
            break
        chain.append(current)
        owner = getattr(current, "__self__", None)
        if owner is not None:
            current = owner
            continue
        inner = getattr(current, "app", None) if through_middleware else None
        current = inner if callable(inner) else None
    return chain


def _find_flask(app: object) -> Any:
    flask = sys.modules.get("flask")
    if flask is None:
        return None
    for candidate in _candidates(app, through_middleware=True):
        if isinstance(candidate, flask.Flask):
            return candidate
    return None


def _find_map(app: object) -> Map | None:
    routing = sys.modules.get("werkzeug.routing")
    if routing is None:
        return None
    for candidate in _candidates(app, through_middleware=False):
        url_map = getattr(candidate, "url_map", None)
        if isinstance(url_map, routing.Map):
            return cast("Map", url_map)
    return None


class EndpointNamer:
    """Names the endpoint of each request; built once per middleware from the wrapped app.

    Call :meth:`name` after the application returned, so that whatever the application left in
    the environ (the Flask rule, a user's own key) is there. ``strategy`` says which default naming
    was chosen: ``"flask"``, ``"werkzeug-map"`` or ``"path"``; a user ``endpoint_key`` is tried
    before it. ``url_map`` names a werkzeug ``Map`` to match against when the app does not expose
    one as ``app.url_map``.

    Example::

        namer = EndpointNamer(flask_app.wsgi_app)
        body = flask_app.wsgi_app(environ, start_response)
        namer.name(environ)  # 'GET /users/<int:user_id>'

        namer = EndpointNamer(app, endpoint_key=lambda environ: environ["myapp.view"])
    """

    def __init__(
        self,
        app: object,
        endpoint_key: Callable[[WSGIEnvironment], str] | None = None,
        *,
        url_map: Map | None = None,
    ) -> None:
        self.endpoint_key = endpoint_key
        self._warned: set[str] = set()
        self._url_map: Map | None = None
        self._no_match: tuple[type[BaseException], ...] = ()
        self._adapters: dict[tuple[object, ...], MapAdapter] = {}
        self._default: Callable[[WSGIEnvironment], str]
        flask_app = None if url_map is not None else _find_flask(app)
        if flask_app is not None:
            _connect_flask(flask_app)
            self.strategy = "flask"
            self._default = self._flask_name
            return
        self._url_map = url_map if url_map is not None else _find_map(app)
        if self._url_map is not None:
            from werkzeug.exceptions import HTTPException
            from werkzeug.routing import RequestRedirect

            self._no_match = (HTTPException, RequestRedirect)
            self.strategy = "werkzeug-map"
            self._default = self._map_name
        else:
            self.strategy = "path"
            self._default = self._path_name

    def name(self, environ: WSGIEnvironment) -> str:
        """The endpoint name of a finished request, e.g. ``GET /users/<int:user_id>``.

        Never raises: an ``endpoint_key`` that raises or returns anything but a non-empty str is
        logged once and the default naming is used instead.
        """
        if self.endpoint_key is not None:
            try:
                key = self.endpoint_key(environ)
            except Exception:
                self._warn_once("key", "endpoint_key raised; using the default endpoint names")
            else:
                if isinstance(key, str) and key:
                    return safe_name(key)
                self._warn_once(
                    "key",
                    f"endpoint_key returned {key!r:.60}, expected a non-empty str; "
                    "using the default endpoint names",
                )
        try:
            return self._default(environ)
        except Exception:
            self._warn_once("default", f"{self.strategy} endpoint naming failed; using the path")
            return self._path_name(environ)

    def _flask_name(self, environ: WSGIEnvironment) -> str:
        template = environ.get(ENVIRON_KEY, _MISSING)
        if template is _MISSING:
            return self._path_name(environ)
        return safe_name(f"{_method(environ)} {UNMATCHED if template is None else template}")

    def _map_name(self, environ: WSGIEnvironment) -> str:
        """Match like ``url_map.bind_to_environ(environ).match()``, reusing the adapter: binding
        costs as much as matching and depends only on the host, scheme and script name."""
        key = tuple(map(environ.get, _BIND_KEYS))
        adapter = self._adapters.get(key)
        if adapter is None:
            assert self._url_map is not None
            adapter = self._url_map.bind_to_environ(environ)
            if len(self._adapters) >= _ADAPTER_CACHE_SIZE:
                self._adapters.clear()
            self._adapters[key] = adapter
        path = environ.get("PATH_INFO") or ""
        if not path.isascii():
            path = path.encode("latin-1").decode("utf-8", "replace")
        method = environ.get("REQUEST_METHOD") or "GET"
        try:
            rule, _ = adapter.match(path, method, return_rule=True)
        except self._no_match:
            return f"{_method(environ)} {UNMATCHED}"
        return safe_name(f"{_method(environ)} {rule.rule}")

    def _path_name(self, environ: WSGIEnvironment) -> str:
        return f"{_method(environ)} {normalize_path(environ.get('PATH_INFO') or '/')}"

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message, exc_info=sys.exc_info()[0] is not None)
