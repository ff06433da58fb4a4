"""Before/after comparison of two profiles (two saved runs, a run and the current window, or two
pulled folders), normalised per request so that runs of different lengths compare.

Pure: merged :class:`~wsgiprof.model.EndpointProfile` objects in, plain data out; nothing here
knows about WSGI, stores or rendering. For each endpoint present in either run: CPU per sampled
request before and after, and the share of all sampled CPU. For each function of each endpoint:
self and total CPU per sampled request of that endpoint, before and after. A function is matched
across runs by its name and file, not its first line, so editing the code above it between two
runs still pairs it with itself.

Example::

    diff = compare(baseline.endpoints, tuned.endpoints, a_label="baseline", b_label="tuned")
    for change in diff.endpoints:
        print(change.name, change.cpu_ms_a, "->", change.cpu_ms_b, change.cpu_change)
    data = diff.to_dict()            # the body of GET /api/diff
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wsgiprof.model import (
    SYNTHETIC_FILE,
    EndpointProfile,
    Frame,
    Stack,
    Weight,
    endpoint_id,
    short_path,
)

__all__ = [
    "Diff",
    "EndpointChange",
    "FunctionChange",
    "compare",
    "diff_flame",
    "profiles_from_pulled",
    "relative_change",
]

FunctionKey = tuple[str, str]
"""(qualified name, file): how a function is recognised in both runs."""

MIN_SHOWN_MS = 0.001
"""Functions whose self and total CPU per request stay below this in both runs are left out."""


def relative_change(before: float | None, after: float | None) -> float | None:
    """``after / before - 1`` (``1.0`` is +100%); None when there is no ``before`` to compare."""
    if before is None or after is None or before <= 0:
        return None
    return after / before - 1


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """One endpoint before (``a``) and after (``b``): CPU per sampled request in milliseconds
    (None without sampled requests) and share of all sampled CPU of its run (0 to 1)."""

    name: str
    requests_a: int
    requests_b: int
    sampled_a: int
    sampled_b: int
    cpu_ms_a: float | None
    cpu_ms_b: float | None
    share_a: float
    share_b: float

    @property
    def id(self) -> str:
        return endpoint_id(self.name)

    @property
    def cpu_change_ms(self) -> float | None:
        if self.cpu_ms_a is None or self.cpu_ms_b is None:
            return None
        return self.cpu_ms_b - self.cpu_ms_a

    @property
    def cpu_change(self) -> float | None:
        return relative_change(self.cpu_ms_a, self.cpu_ms_b)

    @property
    def share_change(self) -> float:
        """Change in share, in fractions of all CPU (0.1 is ten percentage points)."""
        return self.share_b - self.share_a

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "requests": [self.requests_a, self.requests_b],
            "sampled": [self.sampled_a, self.sampled_b],
            "cpu_ms_per_request": [_round(self.cpu_ms_a), _round(self.cpu_ms_b)],
            "cpu_change_ms": _round(self.cpu_change_ms),
            "cpu_change": _round(self.cpu_change),
            "share": [_round(self.share_a), _round(self.share_b)],
            "share_change": _round(self.share_change),
        }


@dataclass(frozen=True, slots=True)
class FunctionChange:
    """One function of one endpoint before and after: self and total CPU milliseconds per
    sampled request of that endpoint (0 where the function did not appear)."""

    endpoint: str
    function: str
    file: str
    line: int
    self_ms_a: float
    self_ms_b: float
    total_ms_a: float
    total_ms_b: float

    @property
    def self_change_ms(self) -> float:
        return self.self_ms_b - self.self_ms_a

    @property
    def total_change_ms(self) -> float:
        return self.total_ms_b - self.total_ms_a

    @property
    def self_change(self) -> float | None:
        return relative_change(self.self_ms_a, self.self_ms_b)

    @property
    def total_change(self) -> float | None:
        return relative_change(self.total_ms_a, self.total_ms_b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "endpoint_id": endpoint_id(self.endpoint),
            "name": self.function,
            "file": short_path(self.file),
            "path": self.file,
            "line": self.line,
            "self_ms_per_request": [_round(self.self_ms_a), _round(self.self_ms_b)],
            "total_ms_per_request": [_round(self.total_ms_a), _round(self.total_ms_b)],
            "self_change_ms": _round(self.self_change_ms),
            "total_change_ms": _round(self.total_change_ms),
            "self_change": _round(self.self_change),
            "total_change": _round(self.total_change),
        }


@dataclass(slots=True)
class Diff:
    """The comparison of run ``a`` (before) with run ``b`` (after).

    ``endpoints`` are ranked by the larger of their two shares; ``functions`` by the size of the
    change in self CPU per request, then in total CPU per request (largest first).
    """

    a_label: str
    b_label: str
    endpoints: list[EndpointChange] = field(default_factory=list)
    functions: list[FunctionChange] = field(default_factory=list)

    def to_dict(self, *, functions: int | None = 200) -> dict[str, Any]:
        """JSON-ready data (the body of ``GET /api/diff``), at most ``functions`` functions."""
        return {
            "a": self.a_label,
            "b": self.b_label,
            "endpoints": [change.to_dict() for change in self.endpoints],
            "functions": [change.to_dict() for change in self.functions[:functions]],
        }


def _function_times(stacks: Mapping[Stack, Weight]) -> dict[FunctionKey, tuple[float, float, int]]:
    """Self and total CPU seconds per function key (recursion counted once), and a line."""
    times: dict[FunctionKey, list[float]] = {}
    lines: dict[FunctionKey, int] = {}
    for stack, weight in stacks.items():
        if not stack:
            continue
        cpu = weight.cpu
        seen: set[FunctionKey] = set()
        for frame in stack:
            if frame.file == SYNTHETIC_FILE:
                continue
            key = (frame.function, frame.file)
            lines[key] = frame.line
            if key not in seen:
                seen.add(key)
                times.setdefault(key, [0.0, 0.0])[1] += cpu
        leaf = stack[-1]
        if leaf.file != SYNTHETIC_FILE:
            times[(leaf.function, leaf.file)][0] += cpu
    return {key: (value[0], value[1], lines[key]) for key, value in times.items()}


def compare(
    a: Mapping[str, EndpointProfile],
    b: Mapping[str, EndpointProfile],
    *,
    a_label: str = "A",
    b_label: str = "B",
) -> Diff:
    """Compare the endpoints of two runs (each keyed by endpoint name), per sampled request."""
    total_a = sum(p.cpu for p in a.values())
    total_b = sum(p.cpu for p in b.values())
    by_name_a = {p.name: p for p in a.values()}
    by_name_b = {p.name: p for p in b.values()}
    diff = Diff(a_label, b_label)
    for name in sorted(by_name_a.keys() | by_name_b.keys()):
        pa, pb = by_name_a.get(name), by_name_b.get(name)
        diff.endpoints.append(
            EndpointChange(
                name=name,
                requests_a=pa.requests if pa else 0,
                requests_b=pb.requests if pb else 0,
                sampled_a=pa.sampled if pa else 0,
                sampled_b=pb.sampled if pb else 0,
                cpu_ms_a=_per_request(pa.cpu, pa.sampled) if pa else None,
                cpu_ms_b=_per_request(pb.cpu, pb.sampled) if pb else None,
                share_a=pa.cpu / total_a if pa and total_a > 0 else 0.0,
                share_b=pb.cpu / total_b if pb and total_b > 0 else 0.0,
            )
        )
        diff.functions.extend(_function_changes(name, pa, pb))
    diff.endpoints.sort(key=lambda c: (-max(c.share_a, c.share_b), c.name))
    diff.functions.sort(
        key=lambda c: (-abs(c.self_change_ms), -abs(c.total_change_ms), c.endpoint, c.function)
    )
    return diff


def _per_request(seconds: float, sampled: int) -> float | None:
    return seconds * 1000 / sampled if sampled > 0 else None


def _function_changes(
    name: str, pa: EndpointProfile | None, pb: EndpointProfile | None
) -> list[FunctionChange]:
    times_a = _function_times(pa.stacks) if pa and pa.sampled else {}
    times_b = _function_times(pb.stacks) if pb and pb.sampled else {}
    scale_a = 1000 / pa.sampled if pa and pa.sampled else 0.0
    scale_b = 1000 / pb.sampled if pb and pb.sampled else 0.0
    changes = []
    for key in times_a.keys() | times_b.keys():
        self_a, total_a, line_a = times_a.get(key, (0.0, 0.0, 0))
        self_b, total_b, line_b = times_b.get(key, (0.0, 0.0, 0))
        change = FunctionChange(
            endpoint=name,
            function=key[0],
            file=key[1],
            line=line_b or line_a,
            self_ms_a=self_a * scale_a,
            self_ms_b=self_b * scale_b,
            total_ms_a=total_a * scale_a,
            total_ms_b=total_b * scale_b,
        )
        if max(change.total_ms_a, change.total_ms_b) >= MIN_SHOWN_MS:
            changes.append(change)
    return changes


def diff_flame(
    a: Iterable[EndpointProfile],
    b: Iterable[EndpointProfile],
    *,
    name: str,
    a_label: str = "A",
    b_label: str = "B",
    by_endpoint: bool = False,
    kind: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """A differential flamegraph in the dashboard viewer's format (see
    :mod:`wsgiprof.dashboard.flame`), with two weights per node instead of CPU and wall:
    ``a`` and ``b``, CPU microseconds per sampled request of the node's endpoint in each run.

    Frames are matched by name and file (their line is the latest seen). With ``by_endpoint``,
    each endpoint gets a root frame of its own. ``kind(file)`` classifies frames for the viewer's
    colours (application, library, ...); without it every frame is ``app``. The ``diff`` field
    tells the viewer to colour frames by growth (b > a) or shrinkage.
    """
    frame_index: dict[FunctionKey, int] = {}
    frames: list[list[Any]] = []
    parent: list[int] = []
    frame_of: list[int] = []
    weights: dict[str, list[float]] = {"a": [], "b": []}
    children: list[dict[int, int]] = []
    roots: dict[int, int] = {}
    sampled = {"a": 0, "b": 0}
    stacks = 0

    def frame_number(frame: Frame) -> int:
        key = (frame.function, frame.file)
        number = frame_index.get(key)
        if number is None:
            number = frame_index[key] = len(frames)
            frames.append(
                [
                    frame.function,
                    frame.file,
                    frame.line,
                    int(frame.off_cpu),
                    kind(frame.file) if kind else "app",
                ]
            )
        else:
            frames[number][2] = frame.line
        return number

    for side, profiles in (("a", a), ("b", b)):
        other = "b" if side == "a" else "a"
        for profile in profiles:
            sampled[side] += profile.sampled
            if profile.sampled <= 0:
                continue
            scale = 1_000_000 / profile.sampled
            root = Frame(profile.name, "<endpoint>", 0) if by_endpoint else None
            for stack, weight in profile.stacks.items():
                value = weight.cpu * scale
                if not stack or value <= 0:
                    continue
                stacks += 1
                path = (root, *stack) if root is not None else stack
                kids = roots
                node = -1
                for frame in path:
                    number = frame_number(frame)
                    child = kids.get(number)
                    if child is None:
                        child = kids[number] = len(parent)
                        parent.append(node)
                        frame_of.append(number)
                        weights[side].append(0.0)
                        weights[other].append(0.0)
                        children.append({})
                    weights[side][child] += value
                    node = child
                    kids = children[child]
    return {
        "name": name,
        "unit": "us",
        "diff": {"a": a_label, "b": b_label, "per": "request"},
        "totals": {
            "a": sum(weights["a"][i] for i in roots.values()),
            "b": sum(weights["b"][i] for i in roots.values()),
        },
        "sampled": sampled,
        "stacks": stacks,
        "omitted_stacks": 0,
        "frames": frames,
        "nodes": {
            "parent": parent,
            "frame": frame_of,
            "a": [round(v, 3) for v in weights["a"]],
            "b": [round(v, 3) for v in weights["b"]],
        },
    }


def profiles_from_pulled(
    summary: Mapping[str, Any], speedscope: Mapping[str, Any]
) -> dict[str, EndpointProfile]:
    """Rebuild the endpoints of a folder saved by ``wsgiprof pull``: counts from its
    ``summary.json``, CPU stacks from its ``all.speedscope.json`` (one profile per endpoint,
    microsecond weights). Raises :class:`ValueError` for files of another shape."""
    try:
        shared = [
            Frame(_strip_marker(str(f["name"])), str(f.get("file", "")), int(f.get("line", 0)))
            for f in speedscope["shared"]["frames"]
        ]
        stacks_by_name: dict[str, dict[Stack, Weight]] = {}
        for profile in speedscope["profiles"]:
            table = stacks_by_name.setdefault(str(profile["name"]), {})
            for sample, micros in zip(profile["samples"], profile["weights"], strict=True):
                stack = tuple(shared[index] for index in sample)
                seconds = float(micros) / 1_000_000
                current = table.get(stack)
                if current is None:
                    table[stack] = Weight(1, 0.0, seconds)
                else:
                    current.add(Weight(1, 0.0, seconds))
        endpoints: dict[str, EndpointProfile] = {}
        for entry in summary["endpoints"]:
            name = str(entry["name"])
            profile = EndpointProfile(
                name,
                requests=int(entry["requests"]),
                sampled=int(entry["sampled"]),
                errors=int(entry.get("errors") or 0),
                cpu=float(entry["cpu_seconds"] or 0.0),
                wall=float(entry["wall_seconds"] or 0.0),
            )
            profile.stacks = stacks_by_name.get(name, {})
            endpoints[name] = profile
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a folder written by wsgiprof pull: {exc!r}") from None
    return endpoints


def _strip_marker(name: str) -> str:
    marker = " [off-CPU]"
    return name[: -len(marker)] if name.endswith(marker) else name


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None:
        return None
    rounded = round(value, digits)
    return 0.0 if rounded == 0 else rounded
