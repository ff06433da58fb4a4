"""Compact, versioned bytes for per-process deltas, and dicts for process readings.

Shared stores (SQLite, Redis) keep each flushed delta as one opaque blob. Layout, version 1::

    b"WPD" <version byte> zlib(<u32 length of meta> <meta: UTF-8 JSON> <binary arrays>)

The JSON meta holds the frame table (each distinct frame once) and the per-endpoint counters and
histograms. Stacks and weights, the bulk of a delta, are little-endian arrays: stack depths, frame
indexes (root first, 16-bit when the table allows), samples, and wall/CPU seconds as IEEE doubles,
so floats come back bit for bit. Encoding and decoding cost about one dict lookup and one tuple slot
per frame, no JSON per number. An unknown header or version is refused with :class:`CodecError`,
never guessed at. Exact data of a tracing engine (per-function totals and caller edges, by frame
number) rides in an optional ``exact`` object of the endpoint's JSON record: small next to the
stacks, absent for sampling engines, and ignored by readers that predate it.

Example::

    blob = encode_delta(aggregator.drain())
    delta = decode_delta(blob)          # == the drained delta, field for field
    info = process_from_dict(process_to_dict(ProcessInfo()))
"""

from __future__ import annotations

import array
import json
import operator
import struct
import sys
import zlib
from collections.abc import Mapping
from itertools import chain
from typing import Any

from wsgiprof.model import (
    DEFAULT_FUNCTION_CAP,
    CallTotals,
    EndpointProfile,
    Frame,
    Histogram,
    Stack,
    Weight,
)
from wsgiprof.stores.base import ProcessInfo

__all__ = [
    "CODEC_VERSION",
    "CodecError",
    "DeltaMerger",
    "decode_delta",
    "encode_delta",
    "process_from_dict",
    "process_to_dict",
]

CODEC_VERSION = 1
"""Version written by :func:`encode_delta`; :func:`decode_delta` reads this version only."""

_MAGIC = b"WPD"
_HEADER = _MAGIC + bytes((CODEC_VERSION,))
_META_LENGTH = struct.Struct("<I")
_COMPRESSION_LEVEL = 1
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()
_SWAP = sys.byteorder == "big"
_SAMPLES = operator.attrgetter("samples")
_WALL = operator.attrgetter("wall")
_CPU = operator.attrgetter("cpu")


def _typecode(size: int, kinds: str) -> str:
    for code in kinds:
        if array.array(code).itemsize == size:
            return code
    raise ImportError(f"no {size}-byte array type among {kinds!r}")  # pragma: no cover


_U16 = _typecode(2, "H")
_U32 = _typecode(4, "IL")
_F64 = _typecode(8, "d")
_I64 = _typecode(8, "q")


class CodecError(ValueError):
    """Bytes that are not a delta this version of wsgiprof can read (foreign, corrupt or newer)."""


class _FrameIndex(dict[Frame, int]):
    """Numbers frames in order of first use; ``index[frame]`` never raises."""

    def __missing__(self, frame: Frame) -> int:
        number = self[frame] = len(self)
        return number


def _flat_histogram(histogram: Histogram) -> list[int]:
    flat: list[int] = []
    for bucket, count in histogram.counts.items():
        flat.append(bucket)
        flat.append(count)
    return flat


def _histogram(flat: list[int]) -> Histogram:
    return Histogram(dict(zip(flat[0::2], flat[1::2], strict=True)))


def _to_bytes(values: array.array[Any]) -> bytes:
    if _SWAP:  # pragma: no cover
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_bytes(
    typecode: str, data: memoryview, offset: int, count: int
) -> tuple[array.array[Any], int]:
    values = array.array(typecode)
    end = offset + count * values.itemsize
    if end > len(data):
        raise CodecError("corrupt wsgiprof delta: truncated arrays")
    values.frombytes(data[offset:end])
    if _SWAP:  # pragma: no cover
        values.byteswap()
    return values, end


def encode_delta(delta: Mapping[str, EndpointProfile]) -> bytes:
    """Serialise a delta (endpoint key → profile) to bytes that :func:`decode_delta` reads."""
    index = _FrameIndex()
    all_stacks: list[Stack] = []
    all_weights: list[Weight] = []
    endpoints: list[dict[str, Any]] = []
    for key, profile in delta.items():
        stacks = profile.stacks
        all_stacks.extend(stacks)
        all_weights.extend(stacks.values())
        record: dict[str, Any] = {
            "key": key,
            "requests": profile.requests,
            "sampled": profile.sampled,
            "errors": profile.errors,
            "cpu": profile.cpu,
            "wall": profile.wall,
            "latency": _flat_histogram(profile.latency),
            "cpu_latency": _flat_histogram(profile.cpu_latency),
            "overflow_samples": profile.overflow_samples,
            "stack_cap": profile.stack_cap,
            "stacks": len(stacks),
        }
        if profile.name != key:
            record["name"] = profile.name
        exact = _exact_record(profile, index)
        if exact:
            record["exact"] = exact
        endpoints.append(record)
    frame_numbers = list(map(index.__getitem__, chain.from_iterable(all_stacks)))
    wide = len(index) > 0xFFFF
    meta = {
        "frames": [[f.function, f.file, f.line, 1 if f.off_cpu else 0] for f in index],
        "wide": wide,
        "endpoints": endpoints,
    }
    text = _ENCODER.encode(meta).encode("utf-8", "surrogatepass")
    body = b"".join(
        (
            _META_LENGTH.pack(len(text)),
            text,
            _to_bytes(array.array(_U32, map(len, all_stacks))),
            _to_bytes(array.array(_U32 if wide else _U16, frame_numbers)),
            _to_bytes(array.array(_I64, map(_SAMPLES, all_weights))),
            _to_bytes(array.array(_F64, map(_WALL, all_weights))),
            _to_bytes(array.array(_F64, map(_CPU, all_weights))),
        )
    )
    return _HEADER + zlib.compress(body, _COMPRESSION_LEVEL)


def _exact_record(profile: EndpointProfile, index: _FrameIndex) -> dict[str, Any]:
    """The exact-engine fields of a profile (absent from deltas of sampling engines, so payloads
    without them, older ones included, decode to profiles without exact data)."""
    record: dict[str, Any] = {}
    if profile.functions:
        record["functions"] = [
            [index[frame], t.ncall, t.nactualcall, t.tsub, t.ttot]
            for frame, t in profile.functions.items()
        ]
    if profile.edges:
        record["edges"] = [
            [index[caller], index[callee], t.ncall, t.nactualcall, t.tsub, t.ttot]
            for (caller, callee), t in profile.edges.items()
        ]
    for name in _EXACT_SCALARS:
        value = getattr(profile, name)
        if value:
            record[name] = value
    if record and profile.function_cap != DEFAULT_FUNCTION_CAP:
        record["function_cap"] = profile.function_cap
    return record


_EXACT_SCALARS = (
    "dropped_functions",
    "traced_cpu",
    "cut_calls",
    "cut_requests",
    "unprofiled_cpu",
    "unprofiled_timed",
)


def decode_delta(
    data: bytes, *, frame_cache: dict[Frame, Frame] | None = None
) -> dict[str, EndpointProfile]:
    """Rebuild the delta that :func:`encode_delta` serialised.

    ``frame_cache``, shared over the deltas of one read, makes equal frames the same object, so
    merging those deltas compares stacks by identity (:class:`DeltaMerger` is faster still).
    Raises :class:`CodecError` for bytes of another format, a newer version, or corrupt content.
    """
    parsed = _parse(data)
    frames = parsed.frames
    if frame_cache is not None:
        frames = [frame_cache.setdefault(frame, frame) for frame in frames]
    numbers = parsed.numbers
    getter = operator.itemgetter
    stacks_in_order: list[Stack] = []
    append = stacks_in_order.append
    position = 0
    for depth in parsed.depths:
        if depth > 1:
            append(getter(*numbers[position : position + depth])(frames))
        elif depth == 1:
            append((frames[numbers[position]],))
        else:
            append(())
        position += depth
    weights = list(map(Weight, parsed.samples, parsed.walls, parsed.cpus))

    delta: dict[str, EndpointProfile] = {}
    start = 0
    for key, profile, count in zip(parsed.keys, parsed.profiles, parsed.counts, strict=True):
        end = start + count
        profile.stacks = dict(zip(stacks_in_order[start:end], weights[start:end], strict=True))
        delta[key] = profile
        start = end
    return delta


class DeltaMerger:
    """Sums many encoded deltas, as a reader of a shared store does, at a fraction of the cost of
    decoding each one and merging the profiles.

    Stacks are summed as tuples of frame numbers; frames and stacks become objects once, in
    :meth:`result`, which equals merging the decoded deltas in the order added with
    :meth:`EndpointProfile.merge <wsgiprof.model.EndpointProfile.merge>` (stack caps included;
    only the float sums of an overflow entry may differ in the last bit, by addition order).

    Example::

        merger = DeltaMerger()
        for blob in blobs:
            merger.add(blob)        # CodecError for a bad blob, which is then left out
        endpoints = merger.result()
    """

    def __init__(self) -> None:
        self._frames = _FrameIndex()
        self._sums: dict[str, _Sum] = {}
        self.added = 0

    def add(self, data: bytes) -> None:
        """Add one delta. Raises :class:`CodecError` and adds nothing if ``data`` is unreadable."""
        parsed = _parse(data)
        local = list(map(self._frames.__getitem__, parsed.frames))
        numbers = list(map(local.__getitem__, parsed.numbers))
        keys: list[tuple[int, ...]] = []
        append = keys.append
        position = 0
        for depth in parsed.depths:
            append(tuple(numbers[position : position + depth]))
            position += depth
        samples, walls, cpus = parsed.samples, parsed.walls, parsed.cpus
        start = 0
        for key, profile, count in zip(parsed.keys, parsed.profiles, parsed.counts, strict=True):
            end = start + count
            current = self._sums.get(key)
            if current is None:
                current = self._sums[key] = _Sum(profile, count)
            else:
                current.profile.merge(profile)
            table = current.stacks
            for index in range(start, end):
                stack_key = keys[index]
                weight = table.get(stack_key)
                if weight is None:
                    table[stack_key] = [samples[index], walls[index], cpus[index]]
                else:
                    weight[0] += samples[index]
                    weight[1] += walls[index]
                    weight[2] += cpus[index]
            start = end
        self.added += 1

    def result(self) -> dict[str, EndpointProfile]:
        """The merged profiles, keyed like the deltas; new objects owned by the caller."""
        frames = list(self._frames)
        getter = operator.itemgetter
        merged: dict[str, EndpointProfile] = {}
        for key, total in self._sums.items():
            stacks: list[tuple[Stack, Weight]] = []
            for numbers, (samples, wall, cpu) in total.stacks.items():
                if len(numbers) > 1:
                    stack: Stack = getter(*numbers)(frames)
                else:
                    stack = tuple(frames[number] for number in numbers)
                stacks.append((stack, Weight(int(samples), wall, cpu)))
            profile = total.profile.copy()
            direct = max(total.first, profile.stack_cap)
            profile.stacks = dict(stacks[:direct])
            if len(stacks) > direct:
                profile.add_stacks(stacks[direct:])
            merged[key] = profile
        return merged


class _Sum:
    """One endpoint: its counters (a profile without stacks), its summed stacks, and how many
    of them came with the first delta (those are kept as they are, like the first profile of
    a chain of merges)."""

    __slots__ = ("first", "profile", "stacks")

    def __init__(self, profile: EndpointProfile, first: int) -> None:
        self.profile = profile
        self.first = first
        self.stacks: dict[tuple[int, ...], list[float]] = {}


def _profile(record: dict[str, Any], frames: list[Frame]) -> EndpointProfile:
    """The profile of an endpoint record, without its stacks."""
    key = record["key"]
    profile = EndpointProfile(
        record.get("name", key),
        requests=record["requests"],
        sampled=record["sampled"],
        errors=record["errors"],
        cpu=record["cpu"],
        wall=record["wall"],
        latency=_histogram(record["latency"]),
        cpu_latency=_histogram(record["cpu_latency"]),
        overflow_samples=record["overflow_samples"],
        stack_cap=record["stack_cap"],
    )
    exact = record.get("exact")
    if exact:
        profile.function_cap = exact.get("function_cap", DEFAULT_FUNCTION_CAP)
        profile.functions = {
            frames[number]: CallTotals(ncall, nactualcall, tsub, ttot)
            for number, ncall, nactualcall, tsub, ttot in exact.get("functions", ())
        }
        profile.edges = {
            (frames[caller], frames[callee]): CallTotals(ncall, nactualcall, tsub, ttot)
            for caller, callee, ncall, nactualcall, tsub, ttot in exact.get("edges", ())
        }
        for name in _EXACT_SCALARS:
            if name in exact:
                setattr(profile, name, exact[name])
    return profile


class _Parsed:
    __slots__ = (
        "counts",
        "cpus",
        "depths",
        "frames",
        "keys",
        "numbers",
        "profiles",
        "samples",
        "walls",
    )

    def __init__(self, frames: list[Frame], records: list[dict[str, Any]]) -> None:
        self.frames = frames
        self.keys: list[str] = [record["key"] for record in records]
        self.profiles = [_profile(record, frames) for record in records]
        self.counts: list[int] = [record["stacks"] for record in records]
        self.depths: list[int] = []
        self.numbers: list[int] = []
        self.samples: list[int] = []
        self.walls: list[float] = []
        self.cpus: list[float] = []


def _parse(data: bytes) -> _Parsed:
    if len(data) < len(_HEADER) or data[: len(_MAGIC)] != _MAGIC:
        raise CodecError("not a wsgiprof delta (bad header)")
    version = data[len(_MAGIC)]
    if version != CODEC_VERSION:
        raise CodecError(
            f"wsgiprof delta format version {version} is not supported: this wsgiprof reads "
            f"version {CODEC_VERSION} only; upgrade wsgiprof in every process sharing the store, "
            "or reset the store"
        )
    try:
        return _parse_body(memoryview(zlib.decompress(data[len(_HEADER) :])))
    except CodecError:
        raise
    except (
        zlib.error,
        struct.error,
        UnicodeDecodeError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        OverflowError,
    ) as exc:
        raise CodecError(f"corrupt wsgiprof delta: {exc!r}") from exc


def _parse_body(body: memoryview) -> _Parsed:
    (meta_length,) = _META_LENGTH.unpack_from(body, 0)
    offset = _META_LENGTH.size + meta_length
    meta = _DECODER.decode(bytes(body[_META_LENGTH.size : offset]).decode("utf-8", "surrogatepass"))
    frames = [
        Frame(function, file, line, bool(off_cpu))
        for function, file, line, off_cpu in meta["frames"]
    ]
    parsed = _Parsed(frames, meta["endpoints"])
    stack_count = sum(parsed.counts)
    depths, offset = _from_bytes(_U32, body, offset, stack_count)
    numbers, offset = _from_bytes(_U32 if meta["wide"] else _U16, body, offset, sum(depths))
    samples, offset = _from_bytes(_I64, body, offset, stack_count)
    walls, offset = _from_bytes(_F64, body, offset, stack_count)
    cpus, offset = _from_bytes(_F64, body, offset, stack_count)
    if offset != len(body):
        raise CodecError("corrupt wsgiprof delta: trailing bytes")
    parsed.numbers = numbers.tolist()
    if parsed.numbers and max(parsed.numbers) >= len(frames):
        raise CodecError("corrupt wsgiprof delta: frame index out of range")
    parsed.depths = depths.tolist()
    parsed.samples = samples.tolist()
    parsed.walls = walls.tolist()
    parsed.cpus = cpus.tolist()
    return parsed


_PROCESS_FIELDS = ("pid", "host", "cpu_percent", "rss_bytes", "threads", "last_seen")
_PROFILER_FIELDS = ("profiler_on_seconds", "profiler_seconds")


def process_to_dict(info: ProcessInfo) -> dict[str, Any]:
    """A JSON-ready dict of a process reading (the inverse of :func:`process_from_dict`)."""
    result = {name: getattr(info, name) for name in _PROCESS_FIELDS}
    for name in _PROFILER_FIELDS:
        value = getattr(info, name)
        if value is not None:
            result[name] = value
    return result


def process_from_dict(data: Mapping[str, Any]) -> ProcessInfo:
    """Rebuild a process reading; unknown keys (from a newer wsgiprof) are ignored.

    Raises :class:`CodecError` when ``pid`` or ``host`` is missing or a field has the wrong type.
    """
    try:
        pid = data["pid"]
        host = data["host"]
    except KeyError as exc:
        raise CodecError(f"process reading without {exc.args[0]!r}") from None
    cpu_percent = data.get("cpu_percent")
    rss_bytes = data.get("rss_bytes")
    threads = data.get("threads")
    last_seen = data.get("last_seen", 0.0)
    if not (
        _is_int(pid)
        and isinstance(host, str)
        and (cpu_percent is None or _is_number(cpu_percent))
        and (rss_bytes is None or _is_int(rss_bytes))
        and (threads is None or _is_int(threads))
        and _is_number(last_seen)
    ):
        raise CodecError(f"process reading with a field of the wrong type: {dict(data)!r}")
    profiler = [data.get(name) for name in _PROFILER_FIELDS]
    if not all(value is None or _is_number(value) for value in profiler):
        raise CodecError(f"process reading with a field of the wrong type: {dict(data)!r}")
    return ProcessInfo(
        pid=pid,
        host=host,
        cpu_percent=cpu_percent,
        rss_bytes=rss_bytes,
        threads=threads,
        last_seen=last_seen,
        profiler_on_seconds=profiler[0],
        profiler_seconds=profiler[1],
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
