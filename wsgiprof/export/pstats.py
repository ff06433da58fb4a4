"""cProfile's marshalled stats, the ``.prof`` file that ``pstats.Stats`` and snakeviz load.

The table is built from sampled stacks rather than from traced calls, so "calls" are sample counts:
for a function f, ``tt`` is the weight of the stacks where f is the leaf, ``ct`` the weight of the
stacks that contain f (once per stack, so recursion does not inflate it) and ``cc == nc`` the
number of samples of those stacks. Each caller edge carries the same four numbers for the stacks
holding that call.

When every exported profile has exact function data from a tracing engine (yappi) and the weight
is CPU, the table comes from that data: real call counts (``cc`` non-recursive, ``nc`` all),
self and total CPU, and each caller edge's own numbers. Every function no caller called gets a
caller naming its endpoint, so snakeviz draws the whole endpoint from one root.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from wsgiprof.export.base import frame_name, iter_combined, weighted_stacks
from wsgiprof.model import CallTotals, EndpointProfile, Frame, Stack, Weight, WeightKind

FuncKey = tuple[str, int, str]
"""pstats' function identity: (file, first line, function name)."""

EdgeStats = tuple[int, int, float, float]
"""(nc, cc, tt, ct) of one caller edge; note the call counts in the other order than functions."""

FuncStats = tuple[int, int, float, float, dict[FuncKey, EdgeStats]]
"""(cc, nc, tt, ct, callers) of one function."""

ALL_ENDPOINTS = Frame("all endpoints", "<wsgiprof>", 0)
"""Root above the endpoint frames of a multi-endpoint export. snakeviz draws from one root (the
uncalled function with the largest total), so without it only the busiest endpoint would show."""

EMPTY = Frame("[no samples]", "<wsgiprof>", 0)
"""Sole entry of a profile without samples: ``pstats.Stats`` refuses an empty table."""


@dataclass(slots=True)
class _Totals:
    samples: int = 0
    tt: float = 0.0
    ct: float = 0.0


@dataclass(slots=True)
class _Function:
    totals: _Totals = field(default_factory=_Totals)
    callers: dict[FuncKey, _Totals] = field(default_factory=dict)


def func_key(frame: Frame) -> FuncKey:
    """The pstats key of ``frame``."""
    return (frame.file, frame.line, frame_name(frame))


def stats_table(stacks: Mapping[Stack, Weight], kind: WeightKind) -> dict[FuncKey, FuncStats]:
    """The pstats dictionary of ``stacks`` weighted by ``kind`` (times in seconds)."""
    return table_of(weighted_stacks(stacks, kind), kind)


def table_of(items: Iterable[tuple[Stack, Weight]], kind: WeightKind) -> dict[FuncKey, FuncStats]:
    """The pstats dictionary of non-empty weighted stacks given one at a time, in order.

    Each distinct frame is resolved to its pstats entry once, so the cost per frame of a stack
    is one dictionary lookup.
    """
    functions: dict[FuncKey, _Function] = {}
    entries: dict[Frame, _Function] = {}
    keys: dict[Frame, FuncKey] = {}
    frames: dict[FuncKey, Frame] = {}

    def function(frame: Frame) -> _Function:
        entry = entries.get(frame)
        if entry is None:
            key = keys[frame] = func_key(frame)
            entry = functions.get(key)
            if entry is None:
                entry = functions[key] = _Function()
                frames[key] = frame
            entries[frame] = entry
        return entry

    for stack, weight in items:
        value, samples = weight.get(kind), weight.samples
        leaf = function(stack[-1])
        leaf.totals.tt += value
        for frame in set(stack):
            totals = function(frame).totals
            totals.samples += samples
            totals.ct += value
        for caller, callee in set(pairwise(stack)):
            callers = function(callee).callers
            caller_key = keys[caller]
            edge = callers.get(caller_key)
            if edge is None:
                edge = callers[caller_key] = _Totals()
            edge.samples += samples
            edge.ct += value
        if len(stack) > 1:
            leaf.callers[keys[stack[-2]]].tt += value

    if not functions:
        functions[func_key(EMPTY)] = _Function()
        frames[func_key(EMPTY)] = EMPTY
    # Keys are made afresh, one object per use, so that marshal writes the same bytes as for a
    # table whose keys were never shared.
    return {
        func_key(frames[key]): (
            entry.totals.samples,
            entry.totals.samples,
            entry.totals.tt,
            entry.totals.ct,
            {
                func_key(frames[caller]): (edge.samples, edge.samples, edge.tt, edge.ct)
                for caller, edge in sorted(entry.callers.items())
            },
        )
        for key, entry in sorted(functions.items())
    }


def exact_table(profiles: Sequence[EndpointProfile]) -> dict[FuncKey, FuncStats]:
    """The pstats dictionary of the exact function data of ``profiles`` (CPU seconds).

    Each endpoint gets a frame of its own (as in :func:`~wsgiprof.model.merge_profiles`) that
    calls the endpoint's root functions; with several profiles :data:`ALL_ENDPOINTS` calls those.
    """
    functions: dict[FuncKey, CallTotals] = {}
    callers: dict[FuncKey, dict[FuncKey, CallTotals]] = {}

    def add(key: FuncKey, totals: CallTotals, caller: FuncKey | None) -> None:
        functions.setdefault(key, CallTotals()).add(totals)
        if caller is not None:
            callers.setdefault(key, {}).setdefault(caller, CallTotals()).add(totals)

    top = func_key(ALL_ENDPOINTS) if len(profiles) > 1 else None
    for profile in profiles:
        endpoint = func_key(Frame(profile.name, "<endpoint>", 0))
        called = {callee for caller, callee in profile.edges if caller != callee}
        roots = CallTotals()
        for frame, totals in profile.functions.items():
            key = func_key(frame)
            if frame in called:
                functions.setdefault(key, CallTotals()).add(totals)
            else:
                add(key, totals, endpoint)
                roots.add(CallTotals(totals.nactualcall, totals.nactualcall, 0.0, totals.ttot))
        for (caller, callee), totals in profile.edges.items():
            callers.setdefault(func_key(callee), {}).setdefault(func_key(caller), CallTotals()).add(
                totals
            )
        add(endpoint, CallTotals(1, 1, 0.0, roots.ttot), top)
        if top is not None:
            add(top, CallTotals(1, 1, 0.0, roots.ttot), None)
    if top is not None:
        # One call of the root, not one per endpoint: it stands for the whole export.
        functions[top].ncall = functions[top].nactualcall = 1
    return {
        key: (
            totals.nactualcall,
            totals.ncall,
            totals.tsub,
            totals.ttot,
            {
                caller: (edge.ncall, edge.nactualcall, edge.tsub, edge.ttot)
                for caller, edge in sorted(callers.get(key, {}).items())
            },
        )
        for key, totals in sorted(functions.items())
    }


class PstatsExporter:
    """A ``.prof`` file (marshalled pstats table) for snakeviz, ``pstats`` and gprof2dot.

    With several profiles each stack starts at :data:`ALL_ENDPOINTS`, then a frame naming its
    endpoint.

    Example::

        path.write_bytes(PstatsExporter().export([profile], "cpu"))
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(10)
    """

    fmt = "prof"
    media_type = "application/octet-stream"
    description = "snakeviz FILE.prof (or python -m pstats FILE.prof)"

    def export(self, profiles: Sequence[EndpointProfile], kind: WeightKind) -> bytes:
        """Marshalled pstats of ``profiles``, weighted by ``kind``."""
        if kind == "cpu" and profiles and all(profile.functions for profile in profiles):
            return marshal.dumps(exact_table(profiles))
        items = iter_combined(profiles, kind)
        if len(profiles) > 1:
            items = (((ALL_ENDPOINTS, *stack), weight) for stack, weight in items)
        return marshal.dumps(table_of(items, kind))
