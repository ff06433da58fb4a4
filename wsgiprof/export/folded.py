"""Folded stacks (``root;…;leaf <count>``), the input of flamegraph.pl, inferno and Pyroscope.

Counts are whole microseconds of the chosen weight, because several readers (speedscope among them)
reject decimal counts. A stack whose weight rounds to zero is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from wsgiprof.export.base import (
    MICROSECONDS,
    frame_label,
    iter_combined,
    to_units,
    utf8,
)
from wsgiprof.model import EndpointProfile, Frame, WeightKind

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
        """Folded lines of ``profiles``, weighted by ``kind``.

        Several profiles are read one stack at a time (see
        :func:`~wsgiprof.export.base.iter_combined`), each frame's label is made once, and each
        line is kept once, as bytes, until the sorted file is joined.
        """
        labels: dict[Frame, str] = {}

        def label(frame: Frame) -> str:
            text = labels.get(frame)
            if text is None:
                text = labels[frame] = sanitise(frame_label(frame))
            return text

        seconds: dict[str, float] = {}
        get = seconds.get
        for stack, weight in iter_combined(profiles, kind):
            line = ";".join(map(label, stack))
            seconds[line] = get(line, 0.0) + weight.get(kind)
        lines = sorted(seconds)
        chunks = []
        for start in range(0, len(lines), _CHUNK):
            part = []
            for line in lines[start : start + _CHUNK]:
                count = to_units(seconds.pop(line), MICROSECONDS)
                if count > 0:
                    part.append(f"{line} {count}\n")
            chunks.append(utf8("".join(part)))
        return b"".join(chunks)


_CHUNK = 4096
"""Lines encoded at a time: the text of the whole file never exists next to its bytes."""
