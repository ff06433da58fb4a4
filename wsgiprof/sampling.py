"""The per-request decision: profile this request or not.

Runs on every request, so the common path is a few attribute reads and one call to
:func:`random.random`. In order:

1. forced: a request with ``X-Wsgiprof: 1`` *and* ``Authorization: Bearer <token>`` matching the
   configured token is always profiled, so one slow request can be examined during a run. The
   header with a missing or wrong token is ignored: it cannot be used to make a server profile
   every request;
2. the user's ``predicate(environ)``, when given, decides alone; an exception from it is logged
   once and counts as "no";
3. otherwise a random fraction ``rate`` of requests (0 never, 1 always).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from wsgiprof.auth import bearer_token, token_matches

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["FORCE_HEADER", "Sampler"]

logger = logging.getLogger("wsgiprof")

FORCE_HEADER = "HTTP_X_WSGIPROF"
"""The environ key of the ``X-Wsgiprof`` request header; the value ``1`` asks for a profile."""


class Sampler:
    """Decides, once per request, whether it is profiled.

    ``rate`` is the fraction of requests profiled (0 to 1); ``predicate``, when given, replaces
    it; ``token`` enables forced profiling by header (without a token the header is ignored).
    ``random`` is the source of uniform numbers in [0, 1), replaceable for reproducible tests.

    Example::

        sampler = Sampler(0.05, token=config.token)
        if sampler.decide(environ):
            ...  # profile this request

        Sampler(0.0, predicate=lambda environ: environ["PATH_INFO"].startswith("/reports/"))
    """

    def __init__(
        self,
        rate: float,
        predicate: Callable[[WSGIEnvironment], bool] | None = None,
        token: str | None = None,
        *,
        random: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or math.isnan(rate):
            raise ValueError(f"sample rate must be a number from 0 to 1, not {rate!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate must be from 0 to 1, not {rate!r}")
        self.rate = float(rate)
        self.predicate = predicate
        self.token = token or None
        self._random = random
        self._predicate_failed = False

    def decide(self, environ: WSGIEnvironment) -> bool:
        """Whether to profile the request of ``environ``. Never raises."""
        if self.token is not None and FORCE_HEADER in environ and self.forced(environ):
            return True
        if self.predicate is not None:
            try:
                return bool(self.predicate(environ))
            except Exception:
                if not self._predicate_failed:
                    self._predicate_failed = True
                    logger.warning("sampling predicate raised; not profiling", exc_info=True)
                return False
        rate = self.rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        return self._random() < rate

    def forced(self, environ: WSGIEnvironment) -> bool:
        """Whether the request asks for a profile with ``X-Wsgiprof: 1`` and a valid bearer
        token."""
        if self.token is None or environ.get(FORCE_HEADER, "").strip() != "1":
            return False
        return token_matches(bearer_token(environ), self.token)
