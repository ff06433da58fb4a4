"""pprof's gzipped ``Profile`` protobuf, for ``go tool pprof`` and Grafana Pyroscope.

No maintained Python writer exists and the message is simple, so a few lines of protobuf encoding
(varints and length-delimited fields) replace a dependency. Field numbers are those of
``perftools.profiles`` in google/pprof's ``proto/profile.proto``.

Each value has two columns, ``samples/count`` and ``cpu/nanoseconds`` (or ``wall/nanoseconds``),
the time column being the default. Every sample carries its endpoint as the string label
``endpoint`` (``go tool pprof -tagfocus endpoint=…``). Locations are functions: the profiles hold
no call-site lines, so a location's line is the function's first line.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence

from wsgiprof.export.base import (
    NANOSECONDS,
    IndexTable,
    frame_name,
    to_units,
    utf8,
    weighted_stacks,
)
from wsgiprof.model import EndpointProfile, Frame, WeightKind

_VARINT = 0
_LENGTH_DELIMITED = 2
_UINT64_MASK = (1 << 64) - 1

# Field numbers from profile.proto.
_PROFILE_SAMPLE_TYPE = 1
_PROFILE_SAMPLE = 2
_PROFILE_LOCATION = 4
_PROFILE_FUNCTION = 5
_PROFILE_STRING_TABLE = 6
_PROFILE_PERIOD_TYPE = 11
_PROFILE_DEFAULT_SAMPLE_TYPE = 14
_VALUE_TYPE_TYPE = 1
_VALUE_TYPE_UNIT = 2
_SAMPLE_LOCATION_ID = 1
_SAMPLE_VALUE = 2
_SAMPLE_LABEL = 3
_LABEL_KEY = 1
_LABEL_STR = 2
_LOCATION_ID = 1
_LOCATION_LINE = 4
_LINE_FUNCTION_ID = 1
_LINE_LINE = 2
_FUNCTION_ID = 1
_FUNCTION_NAME = 2
_FUNCTION_SYSTEM_NAME = 3
_FUNCTION_FILENAME = 4
_FUNCTION_START_LINE = 5


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; a negative int64 is written as its 64-bit two's complement."""
    value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Message:
    """A protobuf message under construction, fields appended in call order.

    Scalars equal to zero are left out, as proto3 does; nested messages and strings are always
    written (``string_table[0]`` is the empty string and must be present).

    Example::

        value_type = Message().scalar(1, 3).scalar(2, 4)
        Message().message(1, value_type).encode()
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def scalar(self, number: int, value: int) -> Message:
        if value:
            self._parts += (varint(number << 3 | _VARINT), varint(value))
        return self

    def blob(self, number: int, data: bytes) -> Message:
        self._parts += (varint(number << 3 | _LENGTH_DELIMITED), varint(len(data)), data)
        return self

    def string(self, number: int, text: str) -> Message:
        return self.blob(number, utf8(text))

    def message(self, number: int, message: Message) -> Message:
        return self.blob(number, message.encode())

    def packed(self, number: int, values: Iterable[int]) -> Message:
        data = b"".join(varint(value) for value in values)
        return self.blob(number, data) if data else self

    def encode(self) -> bytes:
        return b"".join(self._parts)


def _function(number: int, frame: Frame, strings: IndexTable[str]) -> Message:
    return (
        Message()
        .scalar(_FUNCTION_ID, number)
        .scalar(_FUNCTION_NAME, strings(frame_name(frame)))
        .scalar(_FUNCTION_SYSTEM_NAME, strings(frame.function))
        .scalar(_FUNCTION_FILENAME, strings(frame.file))
        .scalar(_FUNCTION_START_LINE, frame.line)
    )


def _location(number: int, frame: Frame) -> Message:
    line = Message().scalar(_LINE_FUNCTION_ID, number).scalar(_LINE_LINE, frame.line)
    return Message().scalar(_LOCATION_ID, number).message(_LOCATION_LINE, line)


def _value_type(strings: IndexTable[str], type_: str, unit: str) -> Message:
    return (
        Message().scalar(_VALUE_TYPE_TYPE, strings(type_)).scalar(_VALUE_TYPE_UNIT, strings(unit))
    )


def encode_profile(profiles: Sequence[EndpointProfile], kind: WeightKind) -> bytes:
    """The uncompressed ``Profile`` message of ``profiles`` weighted by ``kind``."""
    strings = IndexTable("")
    frames: IndexTable[Frame] = IndexTable()
    profile = Message()
    profile.message(_PROFILE_SAMPLE_TYPE, _value_type(strings, "samples", "count"))
    profile.message(_PROFILE_SAMPLE_TYPE, _value_type(strings, kind, "nanoseconds"))
    endpoint_key = strings("endpoint")
    for endpoint in profiles:
        label = (
            Message().scalar(_LABEL_KEY, endpoint_key).scalar(_LABEL_STR, strings(endpoint.name))
        )
        for stack, weight in weighted_stacks(endpoint.stacks, kind):
            nanos = to_units(weight.get(kind), NANOSECONDS)
            if nanos <= 0:
                continue
            sample = (
                Message()
                .packed(_SAMPLE_LOCATION_ID, [frames(f) + 1 for f in reversed(stack)])
                .packed(_SAMPLE_VALUE, [weight.samples, nanos])
                .message(_SAMPLE_LABEL, label)
            )
            profile.message(_PROFILE_SAMPLE, sample)
    for number, frame in enumerate(frames.items, 1):
        profile.message(_PROFILE_LOCATION, _location(number, frame))
    for number, frame in enumerate(frames.items, 1):
        profile.message(_PROFILE_FUNCTION, _function(number, frame, strings))
    period_type = _value_type(strings, kind, "nanoseconds")
    default_sample_type = strings(kind)
    for text in strings.items:
        profile.string(_PROFILE_STRING_TABLE, text)
    profile.message(_PROFILE_PERIOD_TYPE, period_type)
    profile.scalar(_PROFILE_DEFAULT_SAMPLE_TYPE, default_sample_type)
    return profile.encode()


class PprofExporter:
    """A ``.pb.gz`` pprof profile: ``samples/count`` and ``<kind>/nanoseconds`` per stack.

    Example::

        path.write_bytes(PprofExporter().export(profiles, "cpu"))
        # go tool pprof -top -sample_index=cpu FILE.pb.gz
    """

    fmt = "pb.gz"
    media_type = "application/octet-stream"
    description = "go tool pprof -http=: FILE.pb.gz (or upload to Grafana Pyroscope)"

    def export(self, profiles: Sequence[EndpointProfile], kind: WeightKind) -> bytes:
        """Gzipped pprof of ``profiles``, weighted by ``kind``; identical input, identical bytes."""
        return gzip.compress(encode_profile(profiles, kind), mtime=0)
