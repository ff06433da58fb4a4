"""Profile downloads in the formats of existing viewers, looked up by URL suffix.

========================  ======================================  ==============================
fmt                       file                                    opened with
========================  ======================================  ==============================
``folded``                folded stacks, integer microseconds     flamegraph.pl, inferno
``speedscope.json``       speedscope JSON, one profile/endpoint   speedscope.app
``prof``                  marshalled pstats                       snakeviz, pstats
``pb.gz``                 gzipped pprof protobuf                  go tool pprof, Pyroscope
========================  ======================================  ==============================

Example::

    exporter = get_exporter("prof")
    body = exporter.export([profile], "cpu")
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from wsgiprof.export.base import Exporter
from wsgiprof.export.folded import FoldedExporter
from wsgiprof.export.pprof import PprofExporter
from wsgiprof.export.pstats import PstatsExporter
from wsgiprof.export.speedscope import SpeedscopeExporter

_ALL: tuple[Exporter, ...] = (
    FoldedExporter(),
    SpeedscopeExporter(),
    PstatsExporter(),
    PprofExporter(),
)

EXPORTERS: Mapping[str, Exporter] = MappingProxyType({exporter.fmt: exporter for exporter in _ALL})
"""Every exporter, keyed by its ``fmt``."""

FORMATS: tuple[str, ...] = tuple(EXPORTERS)
"""The accepted ``fmt`` values, in the order of the table above."""


def get_exporter(fmt: str) -> Exporter:
    """The exporter for the URL suffix ``fmt``; ``KeyError`` naming the accepted ones otherwise."""
    try:
        return EXPORTERS[fmt]
    except KeyError:
        accepted = ", ".join(FORMATS)
        raise KeyError(f"unknown profile format {fmt!r} (accepted: {accepted})") from None


__all__ = [
    "EXPORTERS",
    "FORMATS",
    "Exporter",
    "FoldedExporter",
    "PprofExporter",
    "PstatsExporter",
    "SpeedscopeExporter",
    "get_exporter",
]
