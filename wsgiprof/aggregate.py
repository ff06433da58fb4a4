"""Per-process aggregation: profiled requests in, per-endpoint deltas out.

Every worker thread adds to one :class:`Aggregator`; a flush drains what was added since the last
flush and hands it to a store. Memory is bounded: at most ``max_endpoints`` distinct endpoint names
per window (the rest count under :data:`OVERFLOW_ENDPOINT`) and at most ``stack_cap`` stacks each.

Example::

    aggregator = Aggregator(max_endpoints=500, stack_cap=5000)
    aggregator.seen("GET /health")
    aggregator.add(profiled_request)
    store.flush(aggregator.drain(), ProcessInfo())
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from wsgiprof.model import CallGraph, EndpointProfile, ProfiledRequest, Stack, Weight

OVERFLOW_ENDPOINT = "[other endpoints]"


class Aggregator:
    """Thread-safe per-endpoint sums of one process, drained as deltas."""

    def __init__(self, *, max_endpoints: int = 500, stack_cap: int = 5000) -> None:
        self.max_endpoints = max_endpoints
        self.stack_cap = stack_cap
        self._lock = threading.Lock()
        self._delta: dict[str, EndpointProfile] = {}
        self._known: set[str] = set()

    def _profile(self, endpoint: str) -> EndpointProfile:
        profile = self._delta.get(endpoint)
        if profile is None:
            if endpoint not in self._known:
                if len(self._known) >= self.max_endpoints:
                    endpoint = OVERFLOW_ENDPOINT
                    profile = self._delta.get(endpoint)
                    if profile is not None:
                        return profile
                else:
                    self._known.add(endpoint)
            profile = self._delta[endpoint] = EndpointProfile(endpoint, stack_cap=self.stack_cap)
        return profile

    def seen(self, endpoint: str, cpu: float | None = None) -> None:
        """Count a request that was not profiled, with its thread CPU seconds when measured."""
        with self._lock:
            profile = self._profile(endpoint)
            profile.requests += 1
            if cpu is not None:
                profile.unprofiled_cpu += cpu
                profile.unprofiled_timed += 1

    def add_call_graph(self, endpoint: str, graph: CallGraph) -> None:
        """Add a tracing engine's exact data for an endpoint (its requests are added apart)."""
        with self._lock:
            self._profile(endpoint).add_call_graph(graph)

    def add_stacks(self, endpoint: str, stacks: Mapping[Stack, Weight]) -> None:
        """Add stacks that a deferred engine delivered after the endpoint's requests."""
        with self._lock:
            self._profile(endpoint).add_stacks(stacks)

    def mark_cut(self, endpoint: str) -> None:
        """Count a profiled request whose exact data is partial (it outlived its window)."""
        with self._lock:
            self._profile(endpoint).cut_requests += 1

    def add(self, request: ProfiledRequest) -> None:
        """Add a profiled request to its endpoint."""
        with self._lock:
            self._profile(request.endpoint).add_request(request)

    def drain(self) -> dict[str, EndpointProfile]:
        """Everything added since the last drain; the aggregator starts a new delta.

        Each drained profile comes with its :class:`~wsgiprof.model.FunctionTotals` computed,
        once per distinct stack, here on the flushing thread rather than on every profiled
        request, so that stores merge them per function and summaries never walk the frames.
        """
        with self._lock:
            delta, self._delta = self._delta, {}
        for profile in delta.values():
            profile.function_totals()
        return delta

    def peek(self) -> dict[str, EndpointProfile]:
        """A copy of the current delta, leaving it in place (for readers that merge it)."""
        with self._lock:
            return {name: profile.copy() for name, profile in self._delta.items()}

    def reset(self) -> None:
        """Forget everything, including which endpoint names count towards the cap."""
        with self._lock:
            self._delta = {}
            self._known = set()
