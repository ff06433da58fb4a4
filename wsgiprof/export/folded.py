"""Folded stacks (``root;…;leaf <count>``), the input of flamegraph.pl, inferno and Pyroscope.

Counts are whole microseconds of the chosen weight, because several readers (speedscope among them)
reject decimal counts. A stack whose weight rounds to zero is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from wsgiprof.export.base import (
    MICROSECONDS,
    combined_stacks,
    frame_label,
    to_units,
    utf8,
    weighted_stacks,
)
from wsgiprof.model import EndpointProfile, WeightKind

_UNSAFE = str.maketrans({";": ":", "\n": " ", "\r": " "})


def sanitise(label: str) -> str:
    """``label`` without the characters that would split a frame (``;``) or a line."""
    return label.translate(_UNSAFE)


class FoldedExporter:
    """One line per stack, ``func (dir/file.py:line);…;leaf <microseconds>``, sorted.

    With several profiles each stack starts with a frame naming its endpoint.

    Example::

        body = FoldedExporter().export([profile], "cpu")
        # b"app.handler (app/views.py:10);render_rows (app/report.py:40) 25000\\n"
    """

    fmt = "folded"
    media_type = "text/plain; charset=utf-8"
    description = (
        "flamegraph.pl FILE.folded > FILE.svg (or inferno-flamegraph; speedscope opens it)"
    )

    def export(self, profiles: Sequence[EndpointProfile], kind: WeightKind) -> bytes:
        """Folded lines of ``profiles``, weighted by ``kind``."""
        seconds: dict[str, float] = {}
        for stack, weight in weighted_stacks(combined_stacks(profiles), kind):
            line = ";".join(sanitise(frame_label(frame)) for frame in stack)
            seconds[line] = seconds.get(line, 0.0) + weight.get(kind)
        lines = []
        for line, value in sorted(seconds.items()):
            count = to_units(value, MICROSECONDS)
            if count > 0:
                lines.append(f"{line} {count}\n")
        return utf8("".join(lines))
