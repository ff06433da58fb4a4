"""Pure profile data: frames, stacks, weights, profiled requests and per-endpoint aggregates.

Nothing here knows about WSGI, engines, stores or rendering. Every aggregate can be merged with
another of its kind, which is how per-thread results become per-process aggregates, and per-process
deltas become the view over all workers and hosts.

Example::

    main = Frame("app.handler", "/srv/app/views.py", 10)
    leaf = Frame("render_rows", "/srv/app/report.py", 40)
    profile = EndpointProfile("GET /report")
    profile.add_request(
        ProfiledRequest(
            endpoint="GET /report", start=0.0, wall=0.012, cpu=0.010, status=200,
            stacks={(main, leaf): Weight(samples=12, wall=0.012, cpu=0.010)},
        )
    )
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

WeightKind = Literal["cpu", "wall"]
"""Which measure a profile is weighted by: CPU time of the thread, or wall-clock time."""

WEIGHT_KINDS: tuple[WeightKind, ...] = ("cpu", "wall")


class Frame(NamedTuple):
    """One function in a call stack.

    Identity is the qualified function name, the full file path and the first line of the function.
    ``off_cpu`` marks a known blocking call (``sleep``, ``socket.recv`` …): such a frame is a leaf
    where the thread waited rather than computed. It is derived from the name alone, so it never
    splits one function into two identities.
    """

    function: str
    file: str
    line: int
    off_cpu: bool = False

    @property
    def short_file(self) -> str:
        """The last two components of the file path, enough to recognise it in a report."""
        return short_path(self.file)

    @property
    def display(self) -> str:
        """``qualname (dir/file.py:line)``, or just the name for built-in functions."""
        if self.file.startswith("<"):
            return self.function
        return f"{self.function} ({self.short_file}:{self.line})"


Stack = tuple[Frame, ...]
"""A call stack, root first. It starts at the application's entry point, never inside wsgiprof."""

SYNTHETIC_FILE = "<wsgiprof>"
"""File name of the frames wsgiprof itself adds (never a function of the application)."""

OUTSIDE_APP = Frame("[outside the application]", SYNTHETIC_FILE, 0)
"""Time a profiled request spent before entering or after leaving the application (server,
middleware, iteration of the response by the server)."""

UNSAMPLED = Frame("[too short to sample]", SYNTHETIC_FILE, 0)
"""All of a request whose every sample fell outside the application: it ran for less than one
sampling interval, so where its time went inside the application is unknown."""

NOT_ON_CPU = Frame("[not on a CPU]", SYNTHETIC_FILE, 0, off_cpu=True)
"""Wall time of a request its thread spent off every CPU: waiting for I/O, a lock, the GIL or a
free core. An engine that samples on CPU clocks sees no stacks there, only how long it was."""

OVERFLOW = Frame("[other stacks]", SYNTHETIC_FILE, 0)
"""Leaf that collects samples of new stacks once an endpoint has reached its stack cap."""


def short_path(path: str) -> str:
    """Shorten a file path to its last two components (``app/report.py``)."""
    if path.startswith("<"):
        return path
    parts = path.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:])


def endpoint_id(name: str) -> str:
    """A short, stable, URL-safe id for an endpoint name, the same in every process and host."""
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


@dataclass(slots=True)
class Weight:
    """What one stack cost: number of samples, wall seconds and CPU seconds."""

    samples: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def add(self, other: Weight) -> None:
        """Add ``other`` into this weight."""
        self.samples += other.samples
        self.wall += other.wall
        self.cpu += other.cpu

    def get(self, kind: WeightKind) -> float:
        """The weight in seconds of the given kind."""
        return self.cpu if kind == "cpu" else self.wall

    def copy(self) -> Weight:
        return Weight(self.samples, self.wall, self.cpu)


@dataclass(frozen=True, slots=True)
class ProfiledRequest:
    """The result of profiling one request: its endpoint, timings and weighted stacks.

    ``cpu`` is the thread CPU time measured around the request; the CPU weights of ``stacks`` add
    up to it. ``wall`` is the wall-clock duration from the start of the call to ``close()``.
    """

    endpoint: str
    start: float
    wall: float
    cpu: float
    status: int
    stacks: Mapping[Stack, Weight]
    error: bool = False
    pid: int = field(default_factory=os.getpid)


# Latency histogram: fixed logarithmic buckets, so histograms of any process merge by addition.
_HIST_BASE = 1.08
_HIST_MIN = 1e-5
_LOG_BASE = math.log(_HIST_BASE)


def _bucket(seconds: float) -> int:
    if seconds <= _HIST_MIN:
        return 0
    return 1 + int(math.log(seconds / _HIST_MIN) / _LOG_BASE)


def _bucket_value(index: int) -> float:
    if index == 0:
        return _HIST_MIN
    low = _HIST_MIN * _HIST_BASE ** (index - 1)
    return low * math.sqrt(_HIST_BASE)


@dataclass(slots=True)
class Histogram:
    """A mergeable latency histogram with logarithmic buckets (about 4% relative error)."""

    counts: dict[int, int] = field(default_factory=dict)

    def add(self, seconds: float, count: int = 1) -> None:
        index = _bucket(seconds)
        self.counts[index] = self.counts.get(index, 0) + count

    def merge(self, other: Histogram) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The value below which a fraction ``q`` of observations fall, or None if empty."""
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return _bucket_value(index)
        return _bucket_value(max(self.counts))

    def copy(self) -> Histogram:
        return Histogram(dict(self.counts))


DEFAULT_STACK_CAP = 5000
DEFAULT_FUNCTION_CAP = 5000
"""Distinct functions kept per endpoint from a tracing engine; caller edges are capped at four
times as many."""

CALL_GRAPH_ROOT = Frame("call graph (yappi)", "<call graph>", 0)
"""Root of the stacks a tracing engine derives from its call graph: they are estimates (each edge's
share spread top-down), not observed stacks, and the root says so in every flamegraph."""

Edge = tuple[Frame, Frame]
"""A caller → callee pair of a call graph."""


@dataclass(slots=True)
class CallTotals:
    """Exact counts and CPU seconds of a function (or of one caller → callee edge), as a tracing
    engine such as yappi measures them.

    ``ncall`` counts every call, recursive ones included; ``nactualcall`` the calls that were not
    recursive. ``tsub`` is self CPU, ``ttot`` total CPU with recursion counted once. For an edge,
    the four numbers describe the callee's calls made from that caller.
    """

    ncall: int = 0
    nactualcall: int = 0
    tsub: float = 0.0
    ttot: float = 0.0

    def add(self, other: CallTotals) -> None:
        """Add ``other`` into these totals."""
        self.ncall += other.ncall
        self.nactualcall += other.nactualcall
        self.tsub += other.tsub
        self.ttot += other.ttot

    def copy(self) -> CallTotals:
        return CallTotals(self.ncall, self.nactualcall, self.tsub, self.ttot)


@dataclass(slots=True)
class CallGraph:
    """What a tracing engine measured for one endpoint over some span (a window, one request):
    exact per-function totals and caller → callee edges, plus the stacks estimated from them
    (under :data:`CALL_GRAPH_ROOT`) so that flamegraphs and the other exports can draw it.

    Example::

        graph = CallGraph(functions={leaf: CallTotals(3, 3, 0.02, 0.02)})
        profile.add_call_graph(graph)
    """

    functions: dict[Frame, CallTotals] = field(default_factory=dict)
    edges: dict[Edge, CallTotals] = field(default_factory=dict)
    stacks: dict[Stack, Weight] = field(default_factory=dict)
    cut_calls: int = 0
    """Calls still running when tracing stopped: their own time is missing (see the engine)."""


@dataclass(slots=True)
class FunctionTotals:
    """Per-function sums over an endpoint's stacks, kept up to date as stacks are added so that
    a summary costs per function rather than per stack and frame.

    ``self_cpu``/``self_wall`` hold the weight of the stacks where a frame is the leaf (keyed in
    order of first appearance as a leaf), ``total_cpu``/``total_wall`` the weight of the stacks
    that contain a frame, counted once per stack (recursion does not inflate it), and
    ``outside_cpu`` the CPU of stacks rooted at a frame wsgiprof adds. These are exactly what
    :func:`function_stats` computes from the same stacks: they describe the stacks as stored, so
    after an overflow the time sits under :data:`OVERFLOW`, as in the stacks themselves.
    """

    self_cpu: dict[Frame, float] = field(default_factory=dict)
    self_wall: dict[Frame, float] = field(default_factory=dict)
    total_cpu: dict[Frame, float] = field(default_factory=dict)
    total_wall: dict[Frame, float] = field(default_factory=dict)
    outside_cpu: float = 0.0
    off_cpu_wall: dict[Frame, float] = field(default_factory=dict)
    """``self_wall`` of the off-CPU leaves only: where requests waited."""

    @classmethod
    def from_stacks(cls, stacks: Mapping[Stack, Weight]) -> FunctionTotals:
        """The totals of ``stacks``, summed in the mapping's order."""
        totals = cls()
        add = totals.add_stack
        for stack, weight in stacks.items():
            add(stack, weight.cpu, weight.wall)
        return totals

    def add_stack(self, stack: Stack, cpu: float, wall: float) -> None:
        """Count one stack's weight (a stack already counted may be counted again: sums add)."""
        if not stack:
            return
        leaf = stack[-1]
        self.self_cpu[leaf] = self.self_cpu.get(leaf, 0.0) + cpu
        self.self_wall[leaf] = self.self_wall.get(leaf, 0.0) + wall
        if leaf.off_cpu:
            self.off_cpu_wall[leaf] = self.off_cpu_wall.get(leaf, 0.0) + wall
        if stack[0].file == SYNTHETIC_FILE:
            self.outside_cpu += cpu
        total_cpu, total_wall = self.total_cpu, self.total_wall
        cpu_get, wall_get = total_cpu.get, total_wall.get
        for frame in set(stack) if len(stack) > 1 else stack:
            total_cpu[frame] = cpu_get(frame, 0.0) + cpu
            total_wall[frame] = wall_get(frame, 0.0) + wall

    def add(self, other: FunctionTotals) -> None:
        """Add the totals of other stacks (those of another profile merged into this one)."""
        for mine, theirs in (
            (self.self_cpu, other.self_cpu),
            (self.self_wall, other.self_wall),
            (self.total_cpu, other.total_cpu),
            (self.total_wall, other.total_wall),
            (self.off_cpu_wall, other.off_cpu_wall),
        ):
            get = mine.get
            for frame, value in theirs.items():
                mine[frame] = get(frame, 0.0) + value
        self.outside_cpu += other.outside_cpu

    def copy(self) -> FunctionTotals:
        return FunctionTotals(
            dict(self.self_cpu),
            dict(self.self_wall),
            dict(self.total_cpu),
            dict(self.total_wall),
            self.outside_cpu,
            dict(self.off_cpu_wall),
        )

    def stats(self, kind: WeightKind = "cpu") -> list[FunctionStats]:
        """The same list as :func:`function_stats` of the stacks, largest self time first."""
        self_time = self.self_cpu if kind == "cpu" else self.self_wall
        total_time = self.total_cpu if kind == "cpu" else self.total_wall
        result = [
            FunctionStats(frame, self_time.get(frame, 0.0), total)
            for frame, total in total_time.items()
        ]
        result.sort(key=lambda s: (-s.self_seconds, -s.total_seconds, s.frame))
        return result


@dataclass(slots=True)
class EndpointProfile:
    """Everything known about one endpoint: counts, time sums, latency and weighted stacks.

    ``requests`` counts every request seen, ``sampled`` those profiled; ``cpu``, ``wall`` and the
    stacks cover the sampled ones only. At most ``stack_cap`` distinct stacks are kept: the samples
    of a new stack past the cap go to :data:`OVERFLOW` under the longest prefix already present, so
    time is never lost, only detail, and ``overflow_samples`` says how much.

    A tracing engine (yappi) adds exact data: ``functions`` and ``edges`` (see :class:`CallGraph`),
    at most ``function_cap`` functions and four times as many edges; entries past the caps are
    counted in ``dropped_functions`` and their time stays in ``traced_cpu``, the self CPU of all
    traced functions. ``cut_calls`` counts calls cut by the end of a tracing window and
    ``cut_requests`` profiled requests that outlived the window they started in (their exact data
    is partial; their measured ``cpu`` is not). ``unprofiled_cpu`` over ``unprofiled_timed`` is the
    mean thread CPU of requests served unprofiled, measured only when an engine asks for it, to
    show what profiling costs.
    """

    name: str
    requests: int = 0
    sampled: int = 0
    errors: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    cpu_latency: Histogram = field(default_factory=Histogram)
    stacks: dict[Stack, Weight] = field(default_factory=dict)
    overflow_samples: int = 0
    stack_cap: int = DEFAULT_STACK_CAP
    functions: dict[Frame, CallTotals] = field(default_factory=dict)
    edges: dict[Edge, CallTotals] = field(default_factory=dict)
    function_cap: int = DEFAULT_FUNCTION_CAP
    dropped_functions: int = 0
    traced_cpu: float = 0.0
    cut_calls: int = 0
    cut_requests: int = 0
    unprofiled_cpu: float = 0.0
    unprofiled_timed: int = 0
    _totals: FunctionTotals | None = field(default=None, init=False, repr=False, compare=False)
    _totals_of: dict[Stack, Weight] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _totals_len: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        return endpoint_id(self.name)

    def add_request(self, request: ProfiledRequest) -> None:
        """Count one sampled request and add its stacks."""
        self.requests += 1
        self.sampled += 1
        self.errors += request.error
        self.cpu += request.cpu
        self.wall += request.wall
        self.latency.add(request.wall)
        self.cpu_latency.add(request.cpu)
        self.add_stacks(request.stacks)

    def tracked_totals(self) -> FunctionTotals | None:
        """The :class:`FunctionTotals` of the stacks if this profile keeps them, else None.

        Totals are kept once :meth:`function_totals` has computed them, through every change
        made by this class (:meth:`add_stacks`, :meth:`merge`, :meth:`copy`). Stacks changed
        from outside (``profile.stacks = …`` or a new key) make them stale: they are then
        dropped here rather than served.
        """
        totals = self._totals
        if totals is None:
            return None
        if self._totals_of is self.stacks and self._totals_len == len(self.stacks):
            return totals
        self._totals = self._totals_of = None
        return None

    def function_totals(self) -> FunctionTotals:
        """The :class:`FunctionTotals` of the stacks, computed once (per stack and frame) and
        then kept up to date as stacks are added."""
        totals = self.tracked_totals()
        if totals is None:
            totals = FunctionTotals.from_stacks(self.stacks)
            self._track(totals)
        return totals

    def _track(self, totals: FunctionTotals | None) -> None:
        self._totals = totals
        self._totals_of = self.stacks if totals is not None else None
        self._totals_len = len(self.stacks)

    def add_stacks(self, stacks: Iterable[tuple[Stack, Weight]] | Mapping[Stack, Weight]) -> None:
        """Add weighted stacks, honouring the stack cap (and the totals, when kept)."""
        items = stacks.items() if isinstance(stacks, (dict, Mapping)) else stacks
        table = self.stacks
        cap = self.stack_cap
        totals = self.tracked_totals()
        if totals is None:
            for stack, weight in items:
                current = table.get(stack)
                if current is not None:
                    current.add(weight)
                elif len(table) < cap:
                    table[stack] = weight.copy()
                else:
                    self._add_overflow(stack, weight)
            return
        count = totals.add_stack
        for stack, weight in items:
            current = table.get(stack)
            if current is not None:
                current.add(weight)
            elif len(table) < cap:
                table[stack] = weight.copy()
            else:
                count(self._add_overflow(stack, weight), weight.cpu, weight.wall)
                continue
            count(stack, weight.cpu, weight.wall)
        self._totals_len = len(table)

    def _add_overflow(self, stack: Stack, weight: Weight) -> Stack:
        """Add ``weight`` under the longest present prefix of ``stack`` + :data:`OVERFLOW`;
        returns the stack it went to."""
        self.overflow_samples += weight.samples
        table = self.stacks
        for depth in range(len(stack) - 1, 0, -1):
            key = (*stack[:depth], OVERFLOW)
            target = table.get(key)
            if target is not None:
                target.add(weight)
                return key
        key = (*stack[:1], OVERFLOW)
        target = table.setdefault(key, Weight())
        target.add(weight)
        return key

    def add_call_graph(self, graph: CallGraph) -> None:
        """Add a tracing engine's exact function data and its estimated stacks."""
        self.add_functions(graph.functions, graph.edges)
        self.cut_calls += graph.cut_calls
        self.add_stacks(graph.stacks)

    def add_functions(
        self, functions: Mapping[Frame, CallTotals], edges: Mapping[Edge, CallTotals]
    ) -> None:
        """Add exact per-function totals and edges, honouring ``function_cap``."""
        table = self.functions
        for frame, totals in functions.items():
            self.traced_cpu += totals.tsub
            current = table.get(frame)
            if current is not None:
                current.add(totals)
            elif len(table) < self.function_cap:
                table[frame] = totals.copy()
            else:
                self.dropped_functions += 1
        edge_table = self.edges
        edge_cap = 4 * self.function_cap
        for edge, totals in edges.items():
            current = edge_table.get(edge)
            if current is not None:
                current.add(totals)
            elif len(edge_table) < edge_cap and edge[0] in table and edge[1] in table:
                edge_table[edge] = totals.copy()

    def merge(self, other: EndpointProfile) -> None:
        """Add another profile of the same endpoint (another thread, process or host) into this."""
        self.requests += other.requests
        self.sampled += other.sampled
        self.errors += other.errors
        self.cpu += other.cpu
        self.wall += other.wall
        self.latency.merge(other.latency)
        self.cpu_latency.merge(other.cpu_latency)
        self.overflow_samples += other.overflow_samples
        self._merge_stacks(other)
        traced = self.traced_cpu + other.traced_cpu
        self.add_functions(other.functions, other.edges)
        self.traced_cpu = traced
        self.dropped_functions += other.dropped_functions
        self.cut_calls += other.cut_calls
        self.cut_requests += other.cut_requests
        self.unprofiled_cpu += other.unprofiled_cpu
        self.unprofiled_timed += other.unprofiled_timed

    def _merge_stacks(self, other: EndpointProfile) -> None:
        """Add the stacks of ``other``. When both keep totals and none of the stacks overflows
        here, the totals are added as a whole, per function rather than per stack and frame;
        an overflow, which moves time to other frames, makes this profile recompute its totals
        when next asked."""
        mine = self.tracked_totals()
        theirs = other.tracked_totals() if mine is not None else None
        if mine is None or theirs is None:
            self.add_stacks(other.stacks)
            return
        self._totals = None
        table = self.stacks
        cap = self.stack_cap
        size = len(table)
        for stack, weight in other.stacks.items():
            current = table.get(stack)
            if current is not None:
                current.add(weight)
            elif size < cap:
                table[stack] = weight.copy()
                size += 1
            else:
                self._add_overflow(stack, weight)
                size = cap + 1
        if size <= cap:
            mine.add(theirs)
            self._track(mine)

    def copy(self) -> EndpointProfile:
        """A deep copy: nothing of the copy is shared with this profile.

        A profile within its caps is copied field by field; one holding more stacks or functions
        than its caps allow (as decoded or merged data may) is rebuilt through :meth:`merge`, so
        that the copy honours the caps as every profile built here does.
        """
        if (
            len(self.stacks) > self.stack_cap
            or len(self.functions) > self.function_cap
            or len(self.edges) > 4 * self.function_cap
        ):
            clone = EndpointProfile(
                self.name, stack_cap=self.stack_cap, function_cap=self.function_cap
            )
            clone.merge(self)
            return clone
        clone = EndpointProfile(
            self.name,
            requests=self.requests,
            sampled=self.sampled,
            errors=self.errors,
            cpu=self.cpu,
            wall=self.wall,
            latency=self.latency.copy(),
            cpu_latency=self.cpu_latency.copy(),
            stacks={stack: Weight(w.samples, w.wall, w.cpu) for stack, w in self.stacks.items()},
            overflow_samples=self.overflow_samples,
            stack_cap=self.stack_cap,
            functions={frame: totals.copy() for frame, totals in self.functions.items()},
            edges={edge: totals.copy() for edge, totals in self.edges.items()},
            function_cap=self.function_cap,
            dropped_functions=self.dropped_functions,
            traced_cpu=self.traced_cpu,
            cut_calls=self.cut_calls,
            cut_requests=self.cut_requests,
            unprofiled_cpu=self.unprofiled_cpu,
            unprofiled_timed=self.unprofiled_timed,
        )
        totals = self.tracked_totals()
        if totals is not None:
            clone._track(totals.copy())
        return clone

    def total(self, kind: WeightKind) -> float:
        """Sum of the stack weights of the given kind, in seconds."""
        return sum(weight.get(kind) for weight in self.stacks.values())


@dataclass(frozen=True, slots=True)
class FunctionStats:
    """Self and total time of one function, summed over stacks (recursion counted once).

    ``calls`` is the exact number of calls when a tracing engine measured them, else None.
    """

    frame: Frame
    self_seconds: float
    total_seconds: float
    calls: int | None = None


def exact_function_stats(
    functions: Mapping[Frame, CallTotals], top: int | None = None
) -> list[FunctionStats]:
    """Functions of a tracing engine's exact data, largest self CPU first (ties by total CPU),
    leaving out the frames wsgiprof adds."""
    result = [
        FunctionStats(frame, totals.tsub, totals.ttot, totals.ncall)
        for frame, totals in functions.items()
        if frame.file != SYNTHETIC_FILE
    ]
    result.sort(key=lambda s: (-s.self_seconds, -s.total_seconds, s.frame))
    return result if top is None else result[: max(top, 0)]


def function_stats(stacks: Mapping[Stack, Weight], kind: WeightKind = "cpu") -> list[FunctionStats]:
    """Self and total time per function, largest self time first.

    Self time is the weight of stacks where the function is the leaf; total time counts each stack
    once for every distinct function in it, so recursion does not inflate it.
    """
    self_time: dict[Frame, float] = {}
    total_time: dict[Frame, float] = {}
    for stack, weight in stacks.items():
        value = weight.get(kind)
        if not stack:
            continue
        leaf = stack[-1]
        self_time[leaf] = self_time.get(leaf, 0.0) + value
        for frame in set(stack):
            total_time[frame] = total_time.get(frame, 0.0) + value
    result = [
        FunctionStats(frame, self_time.get(frame, 0.0), total)
        for frame, total in total_time.items()
    ]
    result.sort(key=lambda s: (-s.self_seconds, -s.total_seconds, s.frame))
    return result


def iter_weighted(
    stacks: Mapping[Stack, Weight], kind: WeightKind
) -> Iterator[tuple[Stack, float]]:
    """Stacks with their weight of one kind, skipping empty stacks and zero weights."""
    for stack, weight in stacks.items():
        value = weight.get(kind)
        if stack and value > 0:
            yield stack, value


def merge_profiles(
    profiles: Iterable[EndpointProfile], name: str = "all endpoints"
) -> EndpointProfile:
    """One profile holding every stack of ``profiles``, each under a root frame naming its endpoint.

    Used for the all-endpoints downloads, so a flamegraph of everything still splits by endpoint.
    """
    merged = EndpointProfile(name, stack_cap=2**62)
    for profile in profiles:
        root = Frame(profile.name, "<endpoint>", 0)
        merged.requests += profile.requests
        merged.sampled += profile.sampled
        merged.errors += profile.errors
        merged.cpu += profile.cpu
        merged.wall += profile.wall
        merged.latency.merge(profile.latency)
        merged.cpu_latency.merge(profile.cpu_latency)
        merged.overflow_samples += profile.overflow_samples
        merged.add_stacks(((root, *stack), weight) for stack, weight in profile.stacks.items())
        merged.cut_calls += profile.cut_calls
        merged.cut_requests += profile.cut_requests
        merged.unprofiled_cpu += profile.unprofiled_cpu
        merged.unprofiled_timed += profile.unprofiled_timed
    return merged
