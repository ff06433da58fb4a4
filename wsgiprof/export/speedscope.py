"""speedscope's own JSON format: one "sampled" profile per endpoint over one shared frame table.

speedscope lets the user switch between the profiles of a file, so endpoints stay apart without a
synthetic root frame. Weights are whole microseconds, like the folded counts, so both files add up
the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TypedDict

from wsgiprof.export.base import (
    MICROSECONDS,
    IndexTable,
    frame_name,
    title,
    to_units,
    utf8,
    weighted_stacks,
)
from wsgiprof.model import EndpointProfile, Frame, Stack, Weight, WeightKind

SCHEMA = "https://www.speedscope.app/file-format-schema.json"


class SpeedscopeFrame(TypedDict):
    """One entry of ``shared.frames``."""

    name: str
    file: str
    line: int


class SampledProfile(TypedDict):
    """One ``"sampled"`` entry of ``profiles``: stacks of frame indices, root first, and weights."""

    type: str
    name: str
    unit: str
    startValue: int
    endValue: int
    samples: list[list[int]]
    weights: list[int]


def _sampled(
    name: str, stacks: Mapping[Stack, Weight], kind: WeightKind, frames: IndexTable[Frame]
) -> SampledProfile:
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, weight in weighted_stacks(stacks, kind):
        micros = to_units(weight.get(kind), MICROSECONDS)
        if micros > 0:
            samples.append([frames(frame) for frame in stack])
            weights.append(micros)
    return {
        "type": "sampled",
        "name": name,
        "unit": "microseconds",
        "startValue": 0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }


class SpeedscopeExporter:
    """A ``.speedscope.json`` file with one sampled profile per endpoint, in the order given.

    Without any endpoint the file holds one empty profile, so ``activeProfileIndex`` 0 exists.

    Example::

        body = SpeedscopeExporter().export(list(snapshot.endpoints.values()), "wall")
        json.loads(body)["profiles"][0]["endValue"]  # total wall microseconds of the first endpoint
    """

    fmt = "speedscope.json"
    media_type = "application/json"
    description = "open https://www.speedscope.app and drop FILE.speedscope.json on it"

    def export(self, profiles: Sequence[EndpointProfile], kind: WeightKind) -> bytes:
        """speedscope JSON of ``profiles``, weighted by ``kind``."""
        frames: IndexTable[Frame] = IndexTable()
        sampled = [_sampled(profile.name, profile.stacks, kind, frames) for profile in profiles]
        if not sampled:
            sampled.append(_sampled("no endpoints", {}, kind, frames))
        shared: list[SpeedscopeFrame] = [
            {"name": frame_name(frame), "file": frame.file, "line": frame.line}
            for frame in frames.items
        ]
        document = {
            "$schema": SCHEMA,
            "name": title(profiles, kind),
            "exporter": "wsgiprof",
            "activeProfileIndex": 0,
            "shared": {"frames": shared},
            "profiles": sampled,
        }
        return utf8(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
