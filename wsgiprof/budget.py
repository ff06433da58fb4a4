"""Overhead budget: lower the effective sample rate so profiling costs at most a set fraction.

``WSGIPROF_MAX_OVERHEAD=0.02`` means: over a sliding window (10 s by default), the extra time
spent because requests were profiled may be at most 2% of the time spent serving all requests.
:class:`OverheadBudget` turns what the middleware measures into an effective sample rate, never
above the configured ``sample_rate``; :class:`Baselines` estimates how much slower a profiled
request ran than it would have unprofiled.

Definitions (all seconds, over the window)::

    T = wall time of every request (profiled ones included, their overhead included)
    C = extra cost of the profiled requests (see "Cost of one profiled request")
    N = number of requests, P = number of profiled requests
    overhead = C / T   (kept <= max_overhead)

With ``u = (T - C) / N`` (mean time of a request without profiling) and ``c = C / P`` (mean cost
of a profiled request), profiling a fraction ``r`` of requests costs ``r*c / (u + r*c)``; the rate
that spends exactly the budget ``m`` is ``r* = m*u / (c*(1 - m))``. :meth:`OverheadBudget.rate`
is ``min(base_rate, r*)``, further scaled down by ``m / (C/T)`` while the window is over budget (a
burst of profiled requests before the first cost was known). Costs are kept when they leave the
window as the last known ``c/u`` ratio, so the rate neither jumps back to ``base_rate`` when
profiled requests become rare nor stays low once cheaper profiles arrive: it recovers as soon as
profiled requests report a lower cost.

Cost of one profiled request
----------------------------
Two parts, both measured on that request, none guessed from a constant:

* ``own``: wsgiprof's own work, timed directly with ``time.perf_counter()``: ``engine.start()``,
  and in ``_finish`` the ``active.stop()``, the conversion of samples into stacks, building the
  :class:`~wsgiprof.model.ProfiledRequest` and ``Aggregator.add``;
* the in-request slowdown (pyinstrument's hook runs on every Python call and return while the
  request is profiled: x1.1 on C-heavy code, x3 and more on call-heavy code): the time the
  application call took while profiled minus the running mean time of the same endpoint's
  *unprofiled* calls (:meth:`Baselines.excess`). Sampling is random, so the profiled requests of an
  endpoint are a fair sample of it and the difference is unbiased; a single request's difference
  can be negative (noise) and is passed on unclamped, only the window's total is clamped at 0.
  Until an endpoint has a baseline, :data:`FALLBACK_SLOWDOWN` stands in (conservative).

Both profiled and unprofiled requests are timed over the same span: the call
``self.app(environ, start_response)`` (for a buffered response, the whole of the application's
work; the iteration of a streamed body by the server is not counted on either side).

Calls the middleware makes (``cfg.max_overhead`` > 0; 0 or unset means no budget, nothing
changes)::

    # __init__, when enabled
    self._budget = OverheadBudget(cfg.max_overhead, cfg.sample_rate)
    self._baselines = Baselines()

    # __call__, before the sampling decision (one attribute write, the Sampler reads self.rate)
    self._sampler.rate = self._budget.rate()

    # __call__, unprofiled path (replaces the plain `return self.app(...)`)
    t0 = time.perf_counter()
    try:
        return self.app(environ, start_response)
    finally:
        wall = time.perf_counter() - t0
        name = self._namer.name(environ)
        self._aggregator.seen(name)
        self._budget.observe(wall)
        self._baselines.update(name, wall)

    # __call__, profiled path
    t0 = time.perf_counter()
    active = self._start_engine()
    t1 = time.perf_counter()                    # own_start = t1 - t0
    body = self.app(environ, recording_start_response)
    app_wall = time.perf_counter() - t1         # pass own_start and app_wall on to _finish

    # _finish, around stop + capture + ProfiledRequest + Aggregator.add
    t2 = time.perf_counter()
    ...                                         # the existing work, endpoint name in `name`
    own = own_start + (time.perf_counter() - t2)
    cost = own + self._baselines.excess(name, app_wall)
    self._budget.record(cost, own + app_wall)

An unprofiled request pays two ``perf_counter()`` calls, one lock and a few float additions
(:meth:`OverheadBudget.observe`, well under a microsecond) and one dict update
(:meth:`Baselines.update`). Nothing on that path allocates a container; Python floats are the only
objects created.

Example::

    budget = OverheadBudget(max_overhead=0.02, base_rate=0.05)
    budget.observe(0.010)              # an unprofiled request took 10 ms
    budget.record(0.004, 0.014)        # a profiled one: 4 ms of it was profiling
    rate = budget.rate()               # <= 0.05
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["FALLBACK_SLOWDOWN", "Baselines", "OverheadBudget"]

FALLBACK_SLOWDOWN = 3.0
"""Assumed slowdown of a profiled request of an endpoint with no unprofiled baseline yet: the call-
heavy worst case measured for pyinstrument (a profiled request costs 2/3 of its time)."""


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, not {value!r}")
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (low_ok and value <= 1.0):
        raise ValueError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1], not {value!r}")
    return float(value)


class OverheadBudget:
    """Effective sample rate keeping (cost of profiling) / (time of all requests) <= max_overhead.

    ``max_overhead`` is the budget (0 < m < 1), ``base_rate`` the configured sample rate, the
    ceiling of :meth:`rate`. The window of ``window_s`` seconds is a ring of ``buckets`` slots,
    preallocated; ``clock`` is a monotonic clock in seconds (replaceable in tests).

    Thread-safe: :meth:`observe` and :meth:`record` take one lock; :meth:`rate` reads one
    attribute. The rate is recomputed on :meth:`record` and when the window moves on (once per
    bucket), never on the unprofiled path otherwise.
    """

    __slots__ = (
        "_bucket_s",
        "_buckets",
        "_clock",
        "_cost",
        "_count",
        "_current",
        "_lock",
        "_profiled",
        "_rate",
        "_ratio",
        "_wall",
        "base_rate",
        "max_overhead",
    )

    def __init__(
        self,
        max_overhead: float,
        base_rate: float,
        *,
        window_s: float = 10.0,
        buckets: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_overhead = _check_fraction("max_overhead", max_overhead, allow_zero=False)
        if self.max_overhead >= 1.0:
            raise ValueError(f"max_overhead must be below 1, not {max_overhead!r}")
        self.base_rate = _check_fraction("base_rate", base_rate, allow_zero=True)
        if not window_s > 0 or buckets < 1:
            raise ValueError("window_s must be positive and buckets at least 1")
        self._buckets = buckets
        self._bucket_s = float(window_s) / buckets
        self._clock = clock
        self._wall = [0.0] * buckets
        self._cost = [0.0] * buckets
        self._count = [0] * buckets
        self._profiled = [0] * buckets
        self._current = int(clock() / self._bucket_s)
        self._lock = threading.Lock()
        self._rate = self.base_rate
        self._ratio = -1.0  # c/u, the relative cost of one profiled request; < 0: unknown

    def rate(self) -> float:
        """The sample rate to use now: at most ``base_rate``."""
        return self._rate

    def observe(self, request_wall_s: float) -> None:
        """Count an unprofiled request that took ``request_wall_s`` seconds. O(1)."""
        index = int(self._clock() / self._bucket_s)
        with self._lock:
            if index != self._current:
                self._advance(index)
            slot = index % self._buckets
            self._wall[slot] += request_wall_s
            self._count[slot] += 1

    def record(self, profiled_cost_s: float, request_wall_s: float) -> None:
        """Count a profiled request: ``request_wall_s`` in all, of which ``profiled_cost_s`` was
        the cost of profiling it (may be negative for one noisy request; see the module notes)."""
        index = int(self._clock() / self._bucket_s)
        with self._lock:
            if index != self._current:
                self._advance(index)
            slot = index % self._buckets
            self._wall[slot] += request_wall_s
            self._count[slot] += 1
            self._cost[slot] += profiled_cost_s
            self._profiled[slot] += 1
            self._update()

    def overhead(self) -> float:
        """The achieved overhead C/T over the current window (0 when nothing was seen)."""
        with self._lock:
            wall = sum(self._wall)
            cost = max(sum(self._cost), 0.0)
        return cost / wall if wall > 0 else 0.0

    def _advance(self, index: int) -> None:
        """Move the window to bucket ``index``, emptying the buckets it skips. Lock held."""
        steps = min(index - self._current, self._buckets)
        for step in range(1, steps + 1):
            slot = (self._current + step) % self._buckets
            self._wall[slot] = 0.0
            self._cost[slot] = 0.0
            self._count[slot] = 0
            self._profiled[slot] = 0
        self._current = index
        self._update()

    def _update(self) -> None:
        """Recompute the rate from the window. Lock held."""
        wall = sum(self._wall)
        cost = max(sum(self._cost), 0.0)
        count = sum(self._count)
        profiled = sum(self._profiled)
        m = self.max_overhead
        if profiled > 0 and count > 0:
            unprofiled_mean = (wall - cost) / count
            if unprofiled_mean > 0:
                self._ratio = (cost / profiled) / unprofiled_mean
        if self._ratio <= 0:
            rate = self.base_rate
        else:
            rate = min(self.base_rate, m / (self._ratio * (1.0 - m)))
        if wall > 0 and cost > m * wall:
            rate *= m * wall / cost
        self._rate = rate


class Baselines:
    """Running mean wall time of each endpoint's unprofiled requests, to estimate by how much a
    profiled request of that endpoint was slowed down.

    An exponentially weighted mean with weight ``alpha`` per request; at most ``max_keys``
    endpoints are tracked (further ones use :data:`FALLBACK_SLOWDOWN`). Updates are plain dict
    writes: safe under the GIL, a rare lost update between threads only delays the mean.
    """

    __slots__ = ("_means", "alpha", "max_keys")

    def __init__(self, *, alpha: float = 0.05, max_keys: int = 1000) -> None:
        self.alpha = _check_fraction("alpha", alpha, allow_zero=False)
        self.max_keys = max_keys
        self._means: dict[str, float] = {}

    def update(self, key: str, wall_s: float) -> None:
        """Add an unprofiled request of endpoint ``key`` that took ``wall_s`` seconds."""
        mean = self._means.get(key)
        if mean is not None:
            self._means[key] = mean + self.alpha * (wall_s - mean)
        elif len(self._means) < self.max_keys:
            self._means[key] = wall_s

    def mean(self, key: str) -> float | None:
        """The running mean of endpoint ``key``, or None before its first unprofiled request."""
        return self._means.get(key)

    def excess(self, key: str, profiled_wall_s: float) -> float:
        """How much longer a profiled request of ``key`` took than an unprofiled one (signed)."""
        mean = self._means.get(key)
        if mean is None:
            return profiled_wall_s * (1.0 - 1.0 / FALLBACK_SLOWDOWN)
        return profiled_wall_s - mean
