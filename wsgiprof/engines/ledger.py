"""Which endpoint a late sample belongs to: the bookkeeping of a deferred engine's requests.

A deferred engine's samples arrive after their request started, often after it ended, and a
request's endpoint is known only once the middleware names it. The ledger holds each request's
samples until then, charges those that arrive later to the named endpoint for a while, and counts
what it has to drop. Pure bookkeeping: no threads of its own, a clock given for ageing.

Example::

    ledger = RequestLedger(clock=time.monotonic)
    ledger.begin(7)
    ledger.add([(7, stack, weight)])    # held: request 7 has no endpoint yet
    ledger.end(7)
    ready = ledger.name(7, "GET /users")  # {"GET /users": {stack: weight}}
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from wsgiprof.model import Stack, Weight

Delivery = dict[str, dict[Stack, Weight]]
"""Stacks ready for the aggregator, by endpoint."""


class RequestLedger:
    """Request ids to endpoints, and the samples waiting for a name. Not thread-safe: the engine
    calls it under its own lock.

    A request is *running* from :meth:`begin` to :meth:`end`, then *ended* until :meth:`name`,
    then *named* for ``keep`` seconds (samples still arriving are charged to its endpoint), then
    forgotten. An ended request never named within ``keep`` seconds, and a dropped one, lose
    their samples; :attr:`lost_cpu` counts them with samples of requests unknown here.
    """

    def __init__(self, *, keep: float, clock: Callable[[], float]) -> None:
        self.keep = keep
        self._clock = clock
        self._running: set[int] = set()
        self._ended: set[int] = set()
        self._named: dict[int, str] = {}
        self._pending: dict[int, dict[Stack, Weight]] = {}
        self._deadline: dict[int, float] = {}
        self._expiry: collections.deque[tuple[float, int]] = collections.deque()
        self.lost_cpu = 0.0

    def begin(self, request: int) -> None:
        """A request started: its samples are held until it is named."""
        self._running.add(request)

    def end(self, request: int) -> None:
        """The request ended; it has ``keep`` seconds to be named."""
        if request in self._running:
            self._running.discard(request)
            self._ended.add(request)
            self._age(request)

    def drop(self, request: int) -> None:
        """The request's profile cannot be trusted: forget it and its samples."""
        self._running.discard(request)
        self._ended.discard(request)
        self._deadline.pop(request, None)
        self._lose(request)

    def name(self, request: int, endpoint: str) -> Delivery:
        """Name an ended request's endpoint; returns its samples held so far."""
        if request not in self._ended:
            return {}
        self._ended.discard(request)
        self._named[request] = endpoint
        self._age(request)
        stacks = self._pending.pop(request, None)
        return {endpoint: stacks} if stacks else {}

    def add(self, samples: Iterable[tuple[int, Stack, Weight]]) -> Delivery:
        """Charge samples ``(request, stack, weight)``; returns those of named requests."""
        self._expire()
        ready: Delivery = {}
        for request, stack, weight in samples:
            endpoint = self._named.get(request)
            if endpoint is not None:
                table = ready.setdefault(endpoint, {})
            elif request in self._running or request in self._ended:
                table = self._pending.setdefault(request, {})
            else:
                self.lost_cpu += weight.cpu
                continue
            current = table.get(stack)
            if current is None:
                table[stack] = weight.copy()
            else:
                current.add(weight)
        return ready

    def __len__(self) -> int:
        """Requests the ledger still knows (running, ended or named)."""
        return len(self._running) + len(self._ended) + len(self._named)

    def _age(self, request: int) -> None:
        deadline = self._clock() + self.keep
        self._deadline[request] = deadline
        self._expiry.append((deadline, request))

    def _expire(self) -> None:
        now = self._clock()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            when, request = expiry.popleft()
            if self._deadline.get(request) != when:
                continue  # superseded: named after it ended, or dropped
            del self._deadline[request]
            if request in self._ended:
                self._ended.discard(request)
                self._lose(request)
            else:
                self._named.pop(request, None)

    def _lose(self, request: int) -> None:
        dropped = self._pending.pop(request, None)
        if dropped:
            self.lost_cpu += sum(weight.cpu for weight in dropped.values())
