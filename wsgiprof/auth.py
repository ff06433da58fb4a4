"""Bearer-token checks shared by the sampler (forced profiling) and the dashboard.

Tokens are read only from the ``Authorization`` header, never from a query string, and compared
in constant time so that response timing does not reveal how much of a guess was right.

Example::

    if token_matches(bearer_token(environ), config.token):
        ...  # the caller holds the token
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["LoginThrottle", "basic_credentials", "bearer_token", "token_matches"]


def bearer_token(environ: WSGIEnvironment) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None`` when the header is
    missing, uses another scheme or carries no token. The scheme is case-insensitive (RFC 9110);
    a UTF-8 token is decoded from the latin-1 text WSGI hands over (PEP 3333)."""
    header: str | None = environ.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token:
        return None
    if not token.isascii():
        try:
            token = token.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return token
    return token


def token_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, compared in constant time; ``None`` never matches,
    nor does anything when ``expected`` is empty."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def basic_credentials(environ: WSGIEnvironment) -> tuple[str, str] | None:
    """The user name and password of an ``Authorization: Basic`` header, or None.

    Why: browsers only prompt for (and then replay) Basic credentials, so the dashboard accepts the
    token as the Basic password with any user name. The credentials are decoded as UTF-8 (the
    charset the challenge announces), falling back to Latin-1 for old clients.

    Example::

        credentials = basic_credentials(environ)
        ok = credentials is not None and token_matches(credentials[1], expected)
    """
    header: str | None = environ.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, colon, password = text.partition(":")
    if not colon:
        return None
    return user, password


class LoginThrottle:
    """Failed login attempts per client address, blocking an address after too many.

    Why: the token is the only guard of the route, so guessing it must be slow. Only failures are
    recorded (a sliding window of the last ``max_failures`` times per address); a correct token
    costs nothing and never waits. At most ``max_clients`` addresses are remembered, least
    recently failed forgotten first, so memory stays bounded whatever the traffic. Thread-safe.

    Example::

        throttle = LoginThrottle(max_failures=5, window=60.0)
        if (wait := throttle.retry_after(client)) is not None:
            ...  # answer 429 with Retry-After: ceil(wait)
        elif not authenticated:
            throttle.failure(client)
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or max_clients < 1:
            raise ValueError("max_failures, window and max_clients must be positive")
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None if it is not blocked."""
        with self._lock:
            times = self._failures.get(client)
            if times is None or len(times) < self.max_failures:
                return None
            wait = times[0] + self.window - self._clock()
            return wait if wait > 0 else None

    def failure(self, client: str) -> None:
        """Record a failed attempt by ``client``."""
        with self._lock:
            now = self._clock()
            times = self._failures.pop(client, None)
            if times is None:
                times = deque(maxlen=self.max_failures)
            while times and times[0] <= now - self.window:
                times.popleft()
            times.append(now)
            self._failures[client] = times
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def forget(self, client: str) -> None:
        """Drop everything recorded about ``client``."""
        with self._lock:
            self._failures.pop(client, None)
