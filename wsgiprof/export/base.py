"""What every exporter is and shares: the :class:`Exporter` protocol, stack selection, frame names
and integer rounding.

An exporter turns merged :class:`~wsgiprof.model.EndpointProfile` objects into the bytes of a file
that an existing viewer opens. All of them read the data the same way, through the helpers here, so
the formats agree with each other: the same stacks (those carrying weight of the chosen kind), the
same frame names (off-CPU leaves visibly marked) and the same fixed order, which makes two exports
of the same data byte-identical.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Generic, Protocol, TypeVar

from wsgiprof.model import EndpointProfile, Frame, Stack, Weight, WeightKind, merge_profiles

OFF_CPU_MARKER = " [off-CPU]"
"""Suffix of the name of a frame where the thread waited instead of computing."""

MICROSECONDS = 1_000_000
NANOSECONDS = 1_000_000_000

K = TypeVar("K", bound=Hashable)


class Exporter(Protocol):
    """Writes profiles in one file format.

    ``fmt`` is the suffix of the download URL (``profile.<fmt>``), ``media_type`` the HTTP content
    type and ``description`` one line telling how to open the file. A single endpoint is exported
    as ``[profile]``; "all endpoints" passes every profile.

    Example::

        exporter = get_exporter("folded")
        body = exporter.export([profile], "cpu")
        headers = [("Content-Type", exporter.media_type)]
    """

    fmt: str
    media_type: str
    description: str

    def export(self, profiles: Sequence[EndpointProfile], kind: WeightKind) -> bytes:
        """The file content for ``profiles``, weighted by CPU or wall time (``kind``)."""
        ...


def frame_name(frame: Frame) -> str:
    """The function name, marked when the frame is an off-CPU leaf. For formats that keep the file
    and line in their own fields (speedscope, pstats, pprof)."""
    return frame.function + OFF_CPU_MARKER if frame.off_cpu else frame.function


def frame_label(frame: Frame) -> str:
    """``qualname (dir/file.py:line)``, marked when off-CPU. For formats with one text per frame."""
    return frame.display + OFF_CPU_MARKER if frame.off_cpu else frame.display


def to_units(seconds: float, per_second: int) -> int:
    """``seconds`` as a whole number of smaller units (``MICROSECONDS``, ``NANOSECONDS``).

    Viewers want integers: speedscope rejects decimals in folded files; pprof values are int64.
    """
    return round(seconds * per_second)


def utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; an undecodable file name (lone surrogate) becomes ``?``."""
    return text.encode("utf-8", "replace")


def weighted_stacks(stacks: Mapping[Stack, Weight], kind: WeightKind) -> list[tuple[Stack, Weight]]:
    """The non-empty stacks with a positive weight of ``kind``, sorted root first by frame."""
    chosen = [(stack, weight) for stack, weight in stacks.items() if stack and weight.get(kind) > 0]
    chosen.sort(key=lambda item: item[0])
    return chosen


def iter_combined(
    profiles: Sequence[EndpointProfile], kind: WeightKind
) -> Iterator[tuple[Stack, Weight]]:
    """What ``weighted_stacks(combined_stacks(profiles), kind)`` yields, in the same order, one
    stack at a time: an all-endpoints export then never holds a copy of every stack.

    Each endpoint's stacks are sorted and yielded under its root frame, endpoints in the order
    of their root frames, which is the order of the combined stacks. Profiles sharing a name
    (whose stacks the combination sums) go through :func:`combined_stacks` instead.
    """
    if len(profiles) == 1:
        yield from weighted_stacks(profiles[0].stacks, kind)
        return
    if len({profile.name for profile in profiles}) < len(profiles):
        yield from weighted_stacks(combined_stacks(profiles), kind)
        return
    roots = sorted((endpoint_root(profile.name), profile) for profile in profiles)
    for root, profile in roots:
        chosen = [
            (stack, weight) for stack, weight in profile.stacks.items() if weight.get(kind) > 0
        ]
        chosen.sort(key=itemgetter(0))
        for stack, weight in chosen:
            yield (root, *stack), weight


def endpoint_root(name: str) -> Frame:
    """The root frame naming an endpoint in combined stacks (as :func:`merge_profiles` adds)."""
    return Frame(name, "<endpoint>", 0)


def combined_stacks(profiles: Sequence[EndpointProfile]) -> Mapping[Stack, Weight]:
    """The stacks of one profile as they are; of several, each under a root frame naming its
    endpoint (see :func:`~wsgiprof.model.merge_profiles`), so one tree still splits by endpoint."""
    if len(profiles) == 1:
        return profiles[0].stacks
    return merge_profiles(profiles).stacks


def title(profiles: Sequence[EndpointProfile], kind: WeightKind) -> str:
    """A name for the exported file: the endpoint, or "all endpoints", and the weight kind."""
    subject = profiles[0].name if len(profiles) == 1 else "all endpoints"
    return f"{subject} ({kind})"


class IndexTable(Generic[K]):
    """Distinct keys numbered from 0 in order of first use: the frame and string tables of formats
    that refer to entries by index.

    Example::

        strings = IndexTable("")
        strings("cpu"), strings("cpu"), strings.items  # 1, 1, ["", "cpu"]
    """

    def __init__(self, *initial: K) -> None:
        self.items: list[K] = []
        self._index: dict[K, int] = {}
        for key in initial:
            self(key)

    def __call__(self, key: K) -> int:
        """The index of ``key``, added at the end if new."""
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.items)
            self.items.append(key)
        return found
