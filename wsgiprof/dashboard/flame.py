"""Flamegraph data for the dashboard's own viewer: a call trie in flat, frame-indexed arrays.

The body of ``GET /api/endpoints/<id>/flame.json`` and ``GET /api/flame.json``::

    {"name": "GET /report", "unit": "us",
     "totals": {"cpu": 310000, "wall": 512000, "samples": 480},
     "sampled": 60, "stacks": 20000, "omitted_stacks": 0,
     "frames": [["render_rows", "/srv/app/report.py", 40, 0, "app"], ...],
     "nodes": {"parent": [-1, 0, 1, ...], "frame": [0, 3, 7, ...],
               "cpu": [...], "wall": [...], "samples": [...]}}

Each frame appears once in ``frames`` as ``[name, file, line, off_cpu (0/1), kind]``; ``kind`` is
:data:`FRAME_KINDS`. Node ``i`` is a call path: its parent node (-1 for a root), its frame, and the
CPU and wall microseconds and samples of every stack through it (inclusive; self time is the node
minus its children). A parent always comes before its children. Weights are integer microseconds
summed from each stack's rounded weight, so the roots add up exactly to ``totals``.

Past ``max_stacks`` stacks in all, each endpoint keeps its heaviest stacks (by CPU and by wall) in
proportion to its share of the stacks; the rest is not lost but folded into one ``[other stacks]``
node under the endpoint's root (or first frame), so every total stays exact.
"""

from __future__ import annotations

import heapq
import sysconfig
from collections.abc import Iterable
from functools import lru_cache
from itertools import count
from operator import attrgetter
from typing import Any, Literal

from wsgiprof.model import OVERFLOW, SYNTHETIC_FILE, EndpointProfile, Frame, Stack

FrameKind = Literal["app", "lib", "std", "builtin", "synthetic", "endpoint"]
FRAME_KINDS: tuple[FrameKind, ...] = ("app", "lib", "std", "builtin", "synthetic", "endpoint")
"""``app``: the application's own code; ``lib``: installed packages (site-packages);
``std``: the standard library; ``builtin``: C functions; ``synthetic``: frames wsgiprof adds;
``endpoint``: the per-endpoint roots of the all-endpoints view."""

ENDPOINT_FILE = "<endpoint>"
"""File of the root frames :func:`wsgiprof.model.merge_profiles` puts above each endpoint."""

MAX_STACKS = 50_000
"""Most stacks one flamegraph draws in detail; beyond that the lightest are folded together."""

MIN_FRACTION = 1e-4
"""Call paths lighter than this fraction of the total, in both CPU and wall, are merged into one
``[tiny frames]`` node under their parent: at 1,280 pixels they would be a tenth of a pixel wide
(flamegraph.pl's default ``--minwidth``). Downloads always keep every stack."""

TINY = Frame("[tiny frames]", SYNTHETIC_FILE, 0)

_US = 1_000_000


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(key, "") for key in ("stdlib", "platstdlib")}
    return tuple(sorted(d.rstrip("/") + "/" for d in dirs if d))


_STDLIB_DIRS = _stdlib_dirs()


@lru_cache(maxsize=65536)
def frame_kind(file: str) -> FrameKind:
    """Where a frame's code lives, from its file path alone."""
    if file == SYNTHETIC_FILE:
        return "synthetic"
    if file == ENDPOINT_FILE:
        return "endpoint"
    if file.startswith("<"):
        return "builtin"
    normal = file.replace("\\", "/")
    if "/site-packages/" in normal or "/dist-packages/" in normal:
        return "lib"
    if normal.startswith(_STDLIB_DIRS) or "/lib/python3" in normal:
        return "std"
    return "app"


_Row = tuple[Stack, int, int, int]


def _rounded_sum(values: Iterable[float]) -> int:
    """Sum of ``values`` each rounded to integer microseconds (C-level loops)."""
    return sum(map(round, map(float(_US).__mul__, values)))


def _endpoint_rows(
    profile: EndpointProfile, root: Frame | None, limit: int | None
) -> tuple[list[_Row], int]:
    """The stacks of one endpoint in integer microseconds, under ``root`` if given. Past
    ``limit`` stacks, only the heaviest by CPU and by wall are kept (selected before any tuple
    is built, so the cost stays per stack, not per frame) and the rest is folded into one
    ``[other stacks]`` stack. Returns the rows and how many stacks were folded."""
    items = [(stack, w) for stack, w in profile.stacks.items() if stack]
    prefix: Stack = (root,) if root is not None else ()
    if limit is None or len(items) <= limit:
        return [
            (prefix + stack, round(w.cpu * _US), round(w.wall * _US), w.samples)
            for stack, w in items
            if w.cpu > 0 or w.wall > 0 or w.samples > 0
        ], 0
    weights = [w for _, w in items]
    cpu = list(map(attrgetter("cpu"), weights))
    wall = list(map(attrgetter("wall"), weights))
    half = max(1, limit // 2)
    keep = {i for _, i in heapq.nlargest(half, zip(cpu, count()))}
    keep.update(i for _, i in heapq.nlargest(half, zip(wall, count())))
    rows = []
    kept_cpu = kept_wall = kept_samples = 0
    for i in sorted(keep):
        stack, w = items[i]
        row = (prefix + stack, round(w.cpu * _US), round(w.wall * _US), w.samples)
        kept_cpu += row[1]
        kept_wall += row[2]
        kept_samples += row[3]
        rows.append(row)
    rest = (
        _rounded_sum(cpu) - kept_cpu,
        _rounded_sum(wall) - kept_wall,
        sum(map(attrgetter("samples"), weights)) - kept_samples,
    )
    other = (*prefix, OVERFLOW) if prefix else (items[0][0][0], OVERFLOW)
    rows.append((other, *rest))
    return rows, len(items) - len(keep)


def flame_data(
    profiles: Iterable[EndpointProfile],
    *,
    name: str,
    by_endpoint: bool = False,
    max_stacks: int = MAX_STACKS,
    min_fraction: float = MIN_FRACTION,
) -> dict[str, Any]:
    """The flamegraph JSON of one endpoint, or of several under one root frame per endpoint
    (``by_endpoint=True``, the all-endpoints view)."""
    profiles = list(profiles)
    stack_count = sum(len(p.stacks) for p in profiles)
    rows: list[_Row] = []
    omitted = 0
    for profile in profiles:
        limit = None
        if stack_count > max_stacks:
            # Budget per endpoint in proportion to its stacks.
            limit = max(2, max_stacks * len(profile.stacks) // stack_count)
        root = Frame(profile.name, ENDPOINT_FILE, 0) if by_endpoint else None
        endpoint_rows, folded = _endpoint_rows(profile, root, limit)
        rows.extend(endpoint_rows)
        omitted += folded

    frame_index: dict[Frame, int] = {}
    frames: list[list[Any]] = []
    parent: list[int] = []
    frame_of: list[int] = []
    cpu_of: list[int] = []
    wall_of: list[int] = []
    samples_of: list[int] = []
    children: list[dict[int, int]] = []
    roots: dict[int, int] = {}
    for stack, cpu, wall, samples in rows:
        kids = roots
        node = -1
        for frame in stack:
            fi = frame_index.get(frame)
            if fi is None:
                fi = frame_index[frame] = len(frames)
                frames.append(
                    [
                        frame.function,
                        frame.file,
                        frame.line,
                        int(frame.off_cpu),
                        frame_kind(frame.file),
                    ]
                )
            child = kids.get(fi)
            if child is None:
                child = kids[fi] = len(parent)
                parent.append(node)
                frame_of.append(fi)
                cpu_of.append(0)
                wall_of.append(0)
                samples_of.append(0)
                children.append({})
            cpu_of[child] += cpu
            wall_of[child] += wall
            samples_of[child] += samples
            node = child
            kids = children[child]
    trie = {
        "parent": parent,
        "frame": frame_of,
        "cpu": cpu_of,
        "wall": wall_of,
        "samples": samples_of,
    }
    nodes = _prune(trie, min_fraction, frame_index, frames)
    return {
        "name": name,
        "unit": "us",
        "totals": {
            "cpu": sum(cpu_of[i] for i in roots.values()),
            "wall": sum(wall_of[i] for i in roots.values()),
            "samples": sum(samples_of[i] for i in roots.values()),
        },
        "sampled": sum(p.sampled for p in profiles),
        "stacks": stack_count,
        "omitted_stacks": omitted,
        "pruned_nodes": len(parent) - len(nodes["parent"]),
        "frames": frames,
        "nodes": nodes,
    }


def _prune(
    trie: dict[str, list[int]],
    min_fraction: float,
    frame_index: dict[Frame, int],
    frames: list[list[Any]],
) -> dict[str, list[int]]:
    """The trie without call paths lighter than ``min_fraction`` of the total in both CPU and
    wall: each parent's light children become one ``[tiny frames]`` child carrying their sum, so
    every node's inclusive and self weights stay exact."""
    parent, frame_of, samples_of = trie["parent"], trie["frame"], trie["samples"]
    cpu_of, wall_of = trie["cpu"], trie["wall"]
    roots = [i for i, p in enumerate(parent) if p < 0]
    min_cpu = min_fraction * sum(cpu_of[i] for i in roots)
    min_wall = min_fraction * sum(wall_of[i] for i in roots)
    new_index = [-1] * len(parent)
    out: dict[str, list[int]] = {k: [] for k in ("parent", "frame", "cpu", "wall", "samples")}
    tiny: dict[int, list[int]] = {}
    for i, p in enumerate(parent):
        if p >= 0 and new_index[p] < 0:
            continue  # under a pruned node: its weight is already in that node's sum
        if cpu_of[i] < min_cpu and wall_of[i] < min_wall:
            sums = tiny.setdefault(new_index[p] if p >= 0 else -1, [0, 0, 0])
            sums[0] += cpu_of[i]
            sums[1] += wall_of[i]
            sums[2] += samples_of[i]
            continue
        new_index[i] = len(out["parent"])
        out["parent"].append(new_index[p] if p >= 0 else -1)
        out["frame"].append(frame_of[i])
        out["cpu"].append(cpu_of[i])
        out["wall"].append(wall_of[i])
        out["samples"].append(samples_of[i])
    if tiny:
        fi = frame_index.get(TINY)
        if fi is None:
            fi = frame_index[TINY] = len(frames)
            frames.append([TINY.function, TINY.file, TINY.line, 0, frame_kind(TINY.file)])
        for owner, (cpu, wall, samples) in sorted(tiny.items()):
            out["parent"].append(owner)
            out["frame"].append(fi)
            out["cpu"].append(cpu)
            out["wall"].append(wall)
            out["samples"].append(samples)
    return out
