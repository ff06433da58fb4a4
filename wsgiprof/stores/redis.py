"""The Redis store: one Redis server shared by every worker of every host of an application.

Use it when the application runs on several instances behind a load balancer
(``WSGIPROF_STORE=redis://host:6379/0``, or ``rediss://`` for TLS; needs the ``redis`` extra).
Each flush is one ``MULTI``/``EXEC`` round trip that appends the worker's encoded delta to a list
and records its process reading, so writers never read-modify-write; a reader merges the list.

Keys, all under ``wsgiprof:{<app_name>}:`` (the braces make the application name a Redis Cluster
hash tag, so every key of one application lives in one slot)::

    window                        hash: id (grows by one per reset), start (epoch seconds)
    w:<id>:deltas                 list of codec payloads, one per flush (or one per compaction)
    w:<id>:processes              hash: "host:pid" -> JSON process reading
    w:<id>:lost                   counter of deltas lost while Redis could not be reached
    w:<id>:compactions            counter of compactions, so a stale one can be refused

Every flush refreshes a TTL (7 days by default) on these keys, so the windows of an application
that is gone expire by themselves. Redis trouble never reaches a request: the client uses short
socket timeouts and no retries, a failed flush counts its delta as lost (kept in the process and
added to Redis once it answers again) and pauses flushing for a few seconds, and ``read`` falls
back to what this process knows.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from wsgiprof.model import EndpointProfile
from wsgiprof.stores.base import ProcessInfo, Snapshot
from wsgiprof.stores.codec import (
    CodecError,
    DeltaMerger,
    encode_delta,
    process_from_dict,
    process_to_dict,
)

__all__ = ["DEFAULT_TTL", "RedisStore"]

DEFAULT_TIMEOUT = 0.25
DEFAULT_TTL = 7 * 24 * 3600
DEFAULT_COMPACT_AFTER = 64
DEFAULT_RETRY_AFTER = 3.0
_WRITER_COMPACT_FACTOR = 4

_log = logging.getLogger("wsgiprof")

# KEYS: window, deltas, compactions. ARGV: window id, compactions seen, payloads merged, merged
# payload, ttl. Refused (0) when a reset or another compaction came first: the head of the list
# would no longer be the payloads that were merged.
_COMPACT_SCRIPT = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return 0 end
if redis.call('LLEN', KEYS[2]) < tonumber(ARGV[3]) then return 0 end
redis.call('LTRIM', KEYS[2], ARGV[3], -1)
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
"""


@dataclass(frozen=True, slots=True)
class _Window:
    id: int
    start: float


@dataclass(eq=False)
class _ProcessState:
    """Client and counters of one process; replaced wholesale in a forked child."""

    client: redis.Redis
    pid: int = field(default_factory=os.getpid)
    lock: threading.Lock = field(default_factory=threading.Lock)
    window: _Window | None = None
    lost_pending: int = 0
    retry_at: float = 0.0
    warned: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Loaded:
    window: _Window | None
    endpoints: dict[str, EndpointProfile]
    processes: list[ProcessInfo]
    payloads: int
    compactions: bytes
    lost: int
    undecodable: int


# Clients inherited over fork: kept referenced so the child never uses or finalises them.
_INHERITED: list[_ProcessState] = []
_FORK_GUARD = threading.Lock()


def _after_fork_in_child() -> None:
    global _FORK_GUARD  # noqa: PLW0603
    _FORK_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RedisStore:
    """A :class:`~wsgiprof.stores.base.Store` in Redis, shared by every process on every host.

    Nothing connects until the first flush or read, so a store opened in a pre-fork master or
    while Redis is down costs nothing. Every command waits at most ``timeout`` seconds (for the
    connection and for each reply) and is never retried. ``flush`` never raises: when Redis does
    not answer, the delta is counted in ``Snapshot.lost_flushes``, the first failure is logged to
    the ``wsgiprof`` logger, and flushes during the next ``retry_after`` seconds are counted as
    lost without trying. ``read`` never raises for an unreachable Redis either: it returns an
    empty window carrying this process's count of lost flushes. A flush whose reply timed out may
    still have been applied by Redis; it is counted as lost all the same.

    A forked child builds its own client on first use and never touches its parent's sockets.
    Readers fold the payloads of a window into one (compaction) once there are more than
    ``compact_after``, so reads stay fast however long nobody looks.

    Example::

        store = RedisStore("redis://10.0.0.5:6379/0", app_name="shop")
        store.flush(aggregator.drain(), ProcessInfo())      # in every worker, every second
        snapshot = store.read()                             # on any host
        store.reset()                                       # a new window for every worker
    """

    def __init__(
        self,
        url: str,
        *,
        app_name: str = "wsgiprof",
        timeout: float = DEFAULT_TIMEOUT,
        ttl: int = DEFAULT_TTL,
        compact_after: int = DEFAULT_COMPACT_AFTER,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("redis", "rediss"):
            raise ValueError(f"RedisStore needs a redis:// or rediss:// URL, not {_safe(url)!r}")
        if not app_name:
            raise ValueError("app_name must not be empty")
        if timeout <= 0 or ttl < 1 or compact_after < 1 or retry_after < 0:
            raise ValueError("timeout must be > 0, ttl and compact_after >= 1 and retry_after >= 0")
        self.url = url
        self.app_name = app_name
        self.timeout = timeout
        self.ttl = ttl
        self.compact_after = compact_after
        self.retry_after = retry_after
        self._prefix = f"wsgiprof:{{{app_name}}}:"
        self._window_key = self._prefix + "window"
        self._state_now = self._new_state()

    def __repr__(self) -> str:
        return f"RedisStore({_safe(self.url)!r}, app_name={self.app_name!r})"

    # -- Store protocol ----------------------------------------------------------------------

    def flush(self, delta: Mapping[str, EndpointProfile], process: ProcessInfo) -> None:
        """Append ``delta`` to the current window and record ``process`` in one round trip;
        never raises for trouble with Redis (the loss is counted instead)."""
        state = self._state()
        with state.lock:
            paused = time.monotonic() < state.retry_at
            if paused and delta:
                state.lost_pending += 1
            lost = state.lost_pending
        if paused:
            return
        try:
            payload = encode_delta(delta) if delta else None
            info = json.dumps(process_to_dict(process))
            length = self._write(state, payload, lost, process.key, info)
        except Exception as exc:
            with state.lock:
                if delta:
                    state.lost_pending += 1
                if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                    state.retry_at = time.monotonic() + self.retry_after
            self._warn_once(
                state, "flush", "wsgiprof: a flush to %s was lost: %s", _safe(self.url), exc
            )
            return
        with state.lock:
            state.lost_pending -= lost
        limit = self.compact_after * _WRITER_COMPACT_FACTOR
        if length and length % limit == 0:
            try:
                self._load(state, compact=True)
            except (RedisError, CodecError) as exc:
                self._warn_once(state, "compact", "wsgiprof: compaction failed: %s", exc)

    def read(self) -> Snapshot:
        """The current window merged over every process that flushed into it; an empty window
        with this process's lost flushes when Redis cannot be reached."""
        state = self._state()
        try:
            loaded = self._load(state, compact=True)
        except RedisError as exc:
            self._warn_once(state, "read", "wsgiprof: cannot read %s: %s", _safe(self.url), exc)
            with state.lock:
                window, lost = state.window, state.lost_pending
            loaded = _Loaded(window, {}, [], 0, b"0", 0, 0)
        else:
            with state.lock:
                state.retry_at = 0.0
                lost = loaded.lost + state.lost_pending
        now = time.time()
        return Snapshot(
            window_start=loaded.window.start if loaded.window is not None else now,
            window_end=now,
            endpoints=loaded.endpoints,
            processes=loaded.processes,
            lost_flushes=lost,
        )

    def reset(self) -> float:
        """Start a new, empty window for every process of this application; returns its start.

        Raises :class:`redis.RedisError` when Redis cannot be reached. The old window's keys are
        deleted; a flush that raced the reset into the old window is repeated in the new one.
        """
        state = self._state()
        start = time.time()
        pipe = state.client.pipeline(transaction=True)
        pipe.hincrby(self._window_key, "id", 1)
        pipe.hset(self._window_key, "start", repr(start))
        pipe.expire(self._window_key, self.ttl)
        window = _Window(int(pipe.execute()[0]), start)
        state.client.delete(*self._keys(window.id - 1))
        with state.lock:
            state.window = window
            state.lost_pending = 0
            state.retry_at = 0.0
        return start

    def window_start(self) -> float:
        """Start time of the current window (the last one seen when Redis cannot be reached)."""
        state = self._state()
        try:
            return self._fetch_window(state).start
        except RedisError:
            with state.lock:
                window = state.window
            return window.start if window is not None else time.time()

    def close(self) -> None:
        """Disconnect this process's connections (the next call reconnects)."""
        self._state().client.close()

    # -- writing and reading -----------------------------------------------------------------

    def _keys(self, window_id: int) -> tuple[str, str, str, str]:
        base = f"{self._prefix}w:{window_id}:"
        return base + "deltas", base + "processes", base + "lost", base + "compactions"

    def _write(
        self, state: _ProcessState, payload: bytes | None, lost: int, process_key: str, info: str
    ) -> int:
        """One flush in one ``MULTI``/``EXEC``; returns the window's payload count after it (0
        when nothing was appended).

        The window id is the one this process saw last; the transaction re-creates the window
        key if Redis lost it and reads it back, so a flush that raced a reset is repeated once
        in the new window (the old window is never read again).
        """
        with state.lock:
            window = state.window
        if window is None:
            window = self._fetch_window(state)
        for _ in range(2):
            deltas, processes, lost_key, compactions = self._keys(window.id)
            pipe = state.client.pipeline(transaction=True)
            pipe.hsetnx(self._window_key, "id", window.id)
            pipe.hsetnx(self._window_key, "start", repr(window.start))
            if payload is not None:
                pipe.rpush(deltas, payload)
            pipe.hset(processes, process_key, info)
            if lost:
                pipe.incrby(lost_key, lost)
            for key in (self._window_key, deltas, processes, lost_key, compactions):
                pipe.expire(key, self.ttl)
            pipe.hmget(self._window_key, ["id", "start"])
            results = pipe.execute()
            current = _parse_window(results[-1])
            assert current is not None
            with state.lock:
                state.window = current
            if current.id == window.id:
                return int(results[2]) if payload is not None else 0
            window = current
        return 0

    def _fetch_window(self, state: _ProcessState) -> _Window:
        """The current window, read from Redis and created there when absent."""
        pipe = state.client.pipeline(transaction=True)
        pipe.hsetnx(self._window_key, "id", 1)
        pipe.hsetnx(self._window_key, "start", repr(time.time()))
        pipe.expire(self._window_key, self.ttl)
        pipe.hmget(self._window_key, ["id", "start"])
        window = _parse_window(pipe.execute()[-1])
        assert window is not None
        with state.lock:
            state.window = window
        return window

    def _load(self, state: _ProcessState, *, compact: bool) -> _Loaded:
        """Read and merge the current window in one transaction; fold its payloads into one
        when there are more than ``compact_after``."""
        window_values = state.client.hmget(self._window_key, ["id", "start"])
        window = _parse_window(window_values)
        if window is None:
            return _Loaded(None, {}, [], 0, b"0", 0, 0)
        with state.lock:
            state.window = window
        deltas, processes, lost_key, compactions = self._keys(window.id)
        pipe = state.client.pipeline(transaction=True)
        pipe.lrange(deltas, 0, -1)
        pipe.hgetall(processes)
        pipe.get(lost_key)
        pipe.get(compactions)
        payloads, process_values, lost, compacted = pipe.execute()

        merger = DeltaMerger()
        undecodable = 0
        for payload in payloads:
            try:
                merger.add(payload)
            except CodecError as exc:
                undecodable += 1
                self._warn_once(state, "decode", "wsgiprof: skipped a delta: %s", exc)
        endpoints = merger.result()
        readings: list[ProcessInfo] = []
        for info in process_values.values():
            try:
                readings.append(process_from_dict(json.loads(info)))
            except (CodecError, ValueError, TypeError) as exc:
                self._warn_once(state, "process", "wsgiprof: skipped a process: %s", exc)
        readings.sort(key=lambda reading: (reading.host, reading.pid))
        loaded = _Loaded(
            window,
            endpoints,
            readings,
            len(payloads),
            compacted or b"0",
            int(lost or 0),
            undecodable,
        )
        if compact and loaded.payloads > self.compact_after and not undecodable:
            self._compact(state, loaded)
        return loaded

    def _compact(self, state: _ProcessState, loaded: _Loaded) -> bool:
        """Replace the payloads that ``loaded`` merged by one payload holding their sum.

        Flushes only append and only compactions remove from the head, so the first
        ``loaded.payloads`` entries are exactly the ones merged as long as the window and the
        compaction counter are unchanged; the script checks both and otherwise changes nothing.
        """
        assert loaded.window is not None
        deltas, _, _, compactions = self._keys(loaded.window.id)
        done = state.client.eval(
            _COMPACT_SCRIPT,
            3,
            self._window_key,
            deltas,
            compactions,
            loaded.window.id,
            loaded.compactions,
            loaded.payloads,
            encode_delta(loaded.endpoints),
            self.ttl,
        )
        return bool(done)

    # -- per-process state -------------------------------------------------------------------

    def _new_state(self) -> _ProcessState:
        client = redis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        return _ProcessState(client)

    def _state(self) -> _ProcessState:
        state = self._state_now
        if state.pid == os.getpid():
            return state
        with _FORK_GUARD:
            state = self._state_now
            if state.pid != os.getpid():
                _INHERITED.append(state)
                state = self._state_now = self._new_state()
            return state

    def _warn_once(self, state: _ProcessState, key: str, message: str, *args: Any) -> None:
        with state.lock:
            if key in state.warned:
                return
            state.warned.add(key)
        _log.warning(message + " (further such failures are not logged)", *args)


def _parse_window(values: Sequence[bytes | str | None]) -> _Window | None:
    window_id, start = values
    if window_id is None or start is None:
        return None
    return _Window(int(window_id), float(start))


def _safe(url: str) -> str:
    """``url`` without its password, for logs and reprs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
