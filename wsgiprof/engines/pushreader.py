"""Read what pyroscope-io pushes: a ``PushRequest`` holding pprof profiles, as plain samples.

The agent POSTs ``/push.v1.PusherService/Push`` with a gzip'd protobuf body: series of labels and
raw profiles, each a (gzip'd) pprof ``Profile``. Only what wsgiprof uses is read: for each sample,
its frames (function name, file and line, root first) and its CPU value (the value whose sample
type is ``cpu``, else the first: CPU nanoseconds for the stack sampler). A protobuf reader of
about sixty lines is enough for this, so no protobuf package is needed.

Example::

    for raw in push_profiles(body):
        for sample in pprof_samples(raw):
            print(sample.frames[-1], sample.value)
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import NamedTuple

_GZIP_MAGIC = b"\x1f\x8b"


class PushFormatError(ValueError):
    """The body is not a well-formed push request or pprof profile."""


class SampleFrame(NamedTuple):
    """One frame of a pprof sample: the function's name, its file and the line being run."""

    name: str
    file: str
    line: int


class Sample(NamedTuple):
    """One pprof sample: frames root first and its CPU value."""

    frames: tuple[SampleFrame, ...]
    value: int


def _varint(data: bytes, index: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if index >= len(data) or shift > 63:
            raise PushFormatError("truncated or oversized varint")
        byte = data[index]
        index += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, index


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: an int for varints, bytes for the rest."""
    index, end = 0, len(data)
    while index < end:
        key, index = _varint(data, index)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, index = _varint(data, index)
            yield number, value
        elif wire == 2:
            length, index = _varint(data, index)
            if index + length > end:
                raise PushFormatError("truncated length-delimited field")
            yield number, data[index : index + length]
            index += length
        elif wire == 1:
            index += 8
        elif wire == 5:
            index += 4
        else:
            raise PushFormatError(f"unsupported wire type {wire}")


def _ints(value: int | bytes) -> list[int]:
    """A repeated integer field, packed or not."""
    if isinstance(value, int):
        return [value]
    out: list[int] = []
    index = 0
    while index < len(value):
        number, index = _varint(value, index)
        out.append(number)
    return out


def _int(fields: dict[int, int | bytes], number: int) -> int:
    value = fields.get(number, 0)
    return value if isinstance(value, int) else 0


def _gunzip(data: bytes) -> bytes:
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise PushFormatError(f"bad gzip data: {exc}") from None


def push_profiles(body: bytes) -> Iterator[bytes]:
    """The raw pprof profiles inside one push request body (gzip'd or not).

    Raises :class:`PushFormatError` when the bytes are not a push request.
    """
    for number, series in _fields(_gunzip(body)):
        if number != 1 or not isinstance(series, bytes):
            continue
        for inner, sample in _fields(series):
            if inner == 2 and isinstance(sample, bytes):
                raw = dict(_fields(sample)).get(1)
                if isinstance(raw, bytes):
                    yield raw


def pprof_samples(raw: bytes) -> list[Sample]:
    """The samples of one pprof profile (gzip'd or not), frames root first.

    Raises :class:`PushFormatError` when the bytes are not a profile.
    """
    strings: list[str] = []
    sample_types: list[bytes] = []
    samples: list[bytes] = []
    locations: list[bytes] = []
    functions: list[bytes] = []
    for number, value in _fields(_gunzip(raw)):
        if not isinstance(value, bytes):
            continue
        if number == 6:
            strings.append(value.decode("utf-8", "replace"))
        elif number == 1:
            sample_types.append(value)
        elif number == 2:
            samples.append(value)
        elif number == 4:
            locations.append(value)
        elif number == 5:
            functions.append(value)

    def string(index: int) -> str:
        return strings[index] if 0 <= index < len(strings) else ""

    types = [string(_int(dict(_fields(entry)), 1)) for entry in sample_types]
    column = types.index("cpu") if "cpu" in types else 0
    names: dict[int, tuple[str, str]] = {}
    for entry in functions:
        fields = dict(_fields(entry))
        names[_int(fields, 1)] = (string(_int(fields, 2)), string(_int(fields, 4)))
    frames_of: dict[int, list[SampleFrame]] = {}
    for entry in locations:
        ident = 0
        lines: list[SampleFrame] = []
        for number, value in _fields(entry):
            if number == 1 and isinstance(value, int):
                ident = value
            elif number == 4 and isinstance(value, bytes):
                line = dict(_fields(value))
                name, file = names.get(_int(line, 1), ("", ""))
                lines.append(SampleFrame(name, file, _int(line, 2)))
        # pprof lists a location's lines innermost first, as it lists locations leaf first.
        frames_of[ident] = lines
    out: list[Sample] = []
    for entry in samples:
        location_ids: list[int] = []
        values: list[int] = []
        for number, value in _fields(entry):
            if number == 1:
                location_ids += _ints(value)
            elif number == 2:
                values += _ints(value)
        leaf_first = [frame for ident in location_ids for frame in frames_of.get(ident, ())]
        value = values[column] if column < len(values) else 0
        out.append(Sample(tuple(reversed(leaf_first)), value))
    return out
