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
    w:<id>:requests               list of request rows (JSON arrays), the newest kept
    runs                          hash: run id -> RunInfo JSON (saved runs)
    runs:payloads                 hash: run id -> encoded run (wsgiprof.stores.runs)
    runs:next                     counter of run ids

Saved runs expire ``run_ttl`` (90 days by default) after the last run was saved. Every flush
refreshes a TTL (7 days by default) on the window keys, so the windows of an application
that is gone expire by themselves. Redis trouble never reaches a request: the client uses short
socket timeouts and no retries, a failed flush counts its delta as lost (kept in the process and
added to Redis once it answers again) and pauses flushing for a few seconds, and ``read`` falls
back to what this process knows.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from wsgiprof.model import EndpointProfile
from wsgiprof.stores.base import (
    MAX_RUNS,
    REQUEST_ROWS_PER_PROCESS,
    ProcessInfo,
    RequestRow,
    RunInfo,
    RunLimitError,
    Snapshot,
    UnknownRunError,
    check_label,
    warn_once,
)
from wsgiprof.stores.codec import (
    CodecError,
    DeltaMerger,
    encode_delta,
    process_from_dict,
    process_to_dict,
)
from wsgiprof.stores.runs import decode_rows, decode_run, encode_rows, encode_run

__all__ = ["DEFAULT_TTL", "RedisStore"]

DEFAULT_TIMEOUT = 0.25
DEFAULT_TTL = 7 * 24 * 3600
DEFAULT_RUN_TTL = 90 * 24 * 3600
_SAVE_ATTEMPTS = 5
_ROWS_CHUNK = 1000
DEFAULT_COMPACT_AFTER = 64
DEFAULT_RETRY_AFTER = 3.0
_WRITER_COMPACT_FACTOR = 4


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


# KEYS: window, deltas, processes, lost, compactions, requests, runs, run payloads, run ids.
# ARGV: window id, compactions seen, payloads merged, run payload, run info, max runs, start of
# the new window, ttl, run ttl. Returns the new run id; -1 when the window changed since it was
# read (the caller reads again), -2 when MAX_RUNS runs are saved.
_SAVE_RUN_SCRIPT = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return -1 end
if (redis.call('GET', KEYS[5]) or '0') ~= ARGV[2] then return -1 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return -1 end
if redis.call('HLEN', KEYS[7]) >= tonumber(ARGV[6]) then return -2 end
local id = redis.call('INCR', KEYS[9])
redis.call('HSET', KEYS[7], id, ARGV[5])
redis.call('HSET', KEYS[8], id, ARGV[4])
for i = 7, 9 do redis.call('EXPIRE', KEYS[i], ARGV[9]) end
redis.call('HINCRBY', KEYS[1], 'id', 1)
redis.call('HSET', KEYS[1], 'start', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return id
"""

# KEYS: requests, processes. ARGV: rows kept per process, ttl. Keeps the newest rows, as many
# per process as ARGV[1] on average over the processes of the window.
_TRIM_ROWS_SCRIPT = """
local keep = tonumber(ARGV[1]) * math.max(1, redis.call('HLEN', KEYS[2]))
redis.call('LTRIM', KEYS[1], -keep, -1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return keep
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
        run_ttl: int = DEFAULT_RUN_TTL,
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
        self.run_ttl = max(run_ttl, 1)
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
            warn_once(
                state.lock,
                state.warned,
                "flush",
                "wsgiprof: a flush to %s was lost: %s",
                _safe(self.url),
                exc,
            )
            return
        with state.lock:
            state.lost_pending -= lost
        limit = self.compact_after * _WRITER_COMPACT_FACTOR
        if length and length % limit == 0:
            try:
                self._load(state, compact=True)
            except (RedisError, CodecError) as exc:
                warn_once(
                    state.lock, state.warned, "compact", "wsgiprof: compaction failed: %s", exc
                )

    def read(self) -> Snapshot:
        """The current window merged over every process that flushed into it; an empty window
        with this process's lost flushes when Redis cannot be reached."""
        state = self._state()
        try:
            loaded = self._load(state, compact=True)
        except RedisError as exc:
            warn_once(
                state.lock,
                state.warned,
                "read",
                "wsgiprof: cannot read %s: %s",
                _safe(self.url),
                exc,
            )
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
        state.client.delete(*self._keys(window.id - 1), self._requests_key(window.id - 1))
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
                warn_once(state.lock, state.warned, "decode", "wsgiprof: skipped a delta: %s", exc)
        endpoints = merger.result()
        readings: list[ProcessInfo] = []
        for info in process_values.values():
            try:
                readings.append(process_from_dict(json.loads(info)))
            except (CodecError, ValueError, TypeError) as exc:
                warn_once(
                    state.lock, state.warned, "process", "wsgiprof: skipped a process: %s", exc
                )
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

    # -- saved runs and request rows ---------------------------------------------------------

    def _requests_key(self, window_id: int) -> str:
        return f"{self._prefix}w:{window_id}:requests"

    def _run_keys(self) -> tuple[str, str, str]:
        return self._prefix + "runs", self._prefix + "runs:payloads", self._prefix + "runs:next"

    def save_run(self, label: str) -> RunInfo:
        """Close the current window as run ``label`` and start a new one. The window is merged
        here and saved by a script that refuses if a flush or a compaction came in between;
        then it is read again (a few attempts). Raises :class:`redis.RedisError` when Redis
        cannot be reached."""
        label = check_label(label)
        state = self._state()
        self._fetch_window(state)
        for _ in range(_SAVE_ATTEMPTS):
            loaded = self._load(state, compact=False)
            if loaded.window is None:
                self._fetch_window(state)
                continue
            now = time.time()
            with state.lock:
                lost = loaded.lost + state.lost_pending
            snapshot = Snapshot(loaded.window.start, now, loaded.endpoints, loaded.processes, lost)
            info = RunInfo.of("0", label, snapshot, now)
            deltas, processes, lost_key, compactions = self._keys(loaded.window.id)
            result = int(
                state.client.eval(
                    _SAVE_RUN_SCRIPT,
                    9,
                    self._window_key,
                    deltas,
                    processes,
                    lost_key,
                    compactions,
                    self._requests_key(loaded.window.id),
                    *self._run_keys(),
                    loaded.window.id,
                    loaded.compactions,
                    loaded.payloads,
                    encode_run(snapshot),
                    json.dumps(info.to_dict()),
                    MAX_RUNS,
                    repr(now),
                    self.ttl,
                    self.run_ttl,
                )
            )
            if result == -2:
                raise RunLimitError(f"{MAX_RUNS} runs are saved already; delete some first")
            if result > 0:
                with state.lock:
                    state.window = _Window(loaded.window.id + 1, now)
                    state.lost_pending = 0
                return RunInfo.of(str(result), label, snapshot, now)
        raise RedisError("the window kept changing while it was saved; try again")

    def list_runs(self) -> list[RunInfo]:
        """The saved runs of this application, oldest first."""
        state = self._state()
        runs = []
        for run_id, info in state.client.hgetall(self._run_keys()[0]).items():
            try:
                runs.append(RunInfo.from_dict({**json.loads(info), "id": _text(run_id)}))
            except ValueError as exc:
                warn_once(state.lock, state.warned, "run", "wsgiprof: skipped a saved run: %s", exc)
        return sorted(runs, key=lambda run: int(run.id) if run.id.isdigit() else 0)

    def load_run(self, run_id: str) -> Snapshot:
        """The snapshot of a saved run; :class:`UnknownRunError` when there is none."""
        if not run_id.isdigit():
            raise UnknownRunError(run_id)
        payload = self._state().client.hget(self._run_keys()[1], run_id)
        if payload is None:
            raise UnknownRunError(run_id)
        return decode_run(payload if isinstance(payload, bytes) else payload.encode())

    def delete_run(self, run_id: str) -> bool:
        """Forget a saved run; False when there was none with that id."""
        if not run_id.isdigit():
            return False
        runs, payloads, _ = self._run_keys()
        pipe = self._state().client.pipeline(transaction=True)
        pipe.hdel(runs, run_id)
        pipe.hdel(payloads, run_id)
        return bool(pipe.execute()[0])

    def flush_requests(self, rows: Sequence[RequestRow]) -> None:
        """Append request rows to the current window's list, trimmed to about
        :data:`~wsgiprof.stores.base.REQUEST_ROWS_PER_PROCESS` per process; never raises."""
        if not rows:
            return
        state = self._state()
        with state.lock:
            window = state.window
            paused = time.monotonic() < state.retry_at
        if paused:
            return
        try:
            if window is None:
                window = self._fetch_window(state)
            key = self._requests_key(window.id)
            texts = encode_rows(rows[-REQUEST_ROWS_PER_PROCESS:])
            pipe = state.client.pipeline(transaction=True)
            for start in range(0, len(texts), _ROWS_CHUNK):
                pipe.rpush(key, *texts[start : start + _ROWS_CHUNK])
            processes = self._keys(window.id)[1]
            pipe.eval(_TRIM_ROWS_SCRIPT, 2, key, processes, REQUEST_ROWS_PER_PROCESS, self.ttl)
            pipe.execute()
        except Exception as exc:
            warn_once(state.lock, state.warned, "rows", "wsgiprof: request rows were lost: %s", exc)

    def read_requests(self) -> list[RequestRow]:
        """The request rows of the current window, oldest first (none when Redis cannot be
        reached)."""
        state = self._state()
        try:
            window = _parse_window(state.client.hmget(self._window_key, ["id", "start"]))
            if window is None:
                return []
            texts = state.client.lrange(self._requests_key(window.id), 0, -1)
        except RedisError as exc:
            warn_once(
                state.lock,
                state.warned,
                "read",
                "wsgiprof: cannot read %s: %s",
                _safe(self.url),
                exc,
            )
            return []
        return sorted(decode_rows(texts), key=lambda row: row.timestamp)

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
