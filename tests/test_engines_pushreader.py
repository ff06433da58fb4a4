"""The push reader against pprof written by wsgiprof's own exporter and push bodies built here."""

from __future__ import annotations

import gzip

import pytest

from wsgiprof.engines.pushreader import (
    PushFormatError,
    SampleFrame,
    pprof_samples,
    push_profiles,
)
from wsgiprof.export.pprof import Message, encode_profile
from wsgiprof.model import EndpointProfile, Frame, Weight

MAIN = Frame("app.handler", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
QUERY = Frame("run_query", "/srv/app/db.py", 7)

REPORT = EndpointProfile(
    "GET /report",
    stacks={
        (MAIN, RENDER): Weight(samples=30, wall=0.030, cpu=0.025),
        (MAIN, QUERY): Weight(samples=10, wall=0.010, cpu=0.004),
    },
)


def push_body(*profiles: bytes, compress: bool = True) -> bytes:
    """A PushRequest: one series per profile, with a label, as pyroscope-io sends it."""
    request = Message()
    for raw in profiles:
        label = Message().string(1, "service_name").string(2, "app")
        sample = Message().blob(1, gzip.compress(raw)).string(2, "id")
        request.message(1, Message().message(1, label).message(2, sample))
    body = request.encode()
    return gzip.compress(body) if compress else body


def test_samples_come_back_root_first_with_their_cpu_value() -> None:
    samples = pprof_samples(gzip.compress(encode_profile([REPORT], "cpu")))
    got = {tuple((f.file, f.line) for f in s.frames): s.value for s in samples}
    assert got == {
        (("/srv/app/views.py", 10), ("/srv/app/report.py", 40)): 25_000_000,
        (("/srv/app/views.py", 10), ("/srv/app/db.py", 7)): 4_000_000,
    }
    assert all(isinstance(frame, SampleFrame) for s in samples for frame in s.frames)


def test_the_value_column_is_the_cpu_one_whatever_its_position() -> None:
    wall = pprof_samples(encode_profile([REPORT], "wall"))
    # No "cpu" column: the first one, samples/count here.
    assert sorted(s.value for s in wall) == [10, 30]


@pytest.mark.parametrize("compress", [True, False])
def test_push_bodies_yield_each_profile(compress: bool) -> None:
    one, two = encode_profile([REPORT], "cpu"), encode_profile([], "cpu")
    raws = list(push_profiles(push_body(one, two, compress=compress)))
    assert [gzip.decompress(raw) for raw in raws] == [one, two]
    assert pprof_samples(raws[1]) == []


@pytest.mark.parametrize(
    "body",
    [b"\x0a\xff", b"\x0a\x05ab", b"\x1f\x8bnot gzip", b"\x0f", b"\xff" * 12],
    ids=["truncated-varint", "short-field", "bad-gzip", "wire-type-7", "oversized-varint"],
)
def test_malformed_bodies_raise_a_format_error(body: bytes) -> None:
    with pytest.raises(PushFormatError):
        list(push_profiles(body))
    with pytest.raises(PushFormatError):
        pprof_samples(body)
