"""cProfile's marshalled stats, the ``.prof`` file that ``pstats.Stats`` and snakeviz load.

The table is built from sampled stacks rather than from traced calls, so "calls" are sample counts:
for a function f, ``tt`` is the weight of the stacks where f is the leaf, ``ct`` the weight of the
stacks that contain f (once per stack, so recursion does not inflate it) and ``cc == nc`` the
number of samples of those stacks. Each caller edge carries the same four numbers for the stacks
holding that call.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from wsgiprof.export.base import combined_stacks, frame_name, weighted_stacks
from wsgiprof.model import EndpointProfile, Frame, Stack, Weight, WeightKind

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
    functions: dict[FuncKey, _Function] = {}

    def function(frame: Frame) -> _Function:
        return functions.setdefault(func_key(frame), _Function())

    for stack, weight in weighted_stacks(stacks, kind):
        value, samples = weight.get(kind), weight.samples
        leaf = function(stack[-1])
        leaf.totals.tt += value
        for frame in set(stack):
            totals = function(frame).totals
            totals.samples += samples
            totals.ct += value
        for caller, callee in set(pairwise(stack)):
            edge = function(callee).callers.setdefault(func_key(caller), _Totals())
            edge.samples += samples
            edge.ct += value
        if len(stack) > 1:
            leaf.callers[func_key(stack[-2])].tt += value

    if not functions:
        functions[func_key(EMPTY)] = _Function()
    return {
        key: (
            entry.totals.samples,
            entry.totals.samples,
            entry.totals.tt,
            entry.totals.ct,
            {
                caller: (edge.samples, edge.samples, edge.tt, edge.ct)
                for caller, edge in sorted(entry.callers.items())
            },
        )
        for key, entry in sorted(functions.items())
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
        stacks = combined_stacks(profiles)
        if len(profiles) > 1:
            stacks = {(ALL_ENDPOINTS, *stack): weight for stack, weight in stacks.items()}
        return marshal.dumps(stats_table(stacks, kind))
