"""The delta codec: exact round trips, a versioned header, clear errors for foreign bytes."""

from __future__ import annotations

import json
import math
import zlib

import pytest

from wsgiprof.model import OVERFLOW, EndpointProfile, Frame, Histogram, Stack, Weight
from wsgiprof.stores.base import ProcessInfo
from wsgiprof.stores.codec import (
    CODEC_VERSION,
    CodecError,
    DeltaMerger,
    decode_delta,
    encode_delta,
    process_from_dict,
    process_to_dict,
)

MAIN = Frame("views.report", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)
SLEEP_ON_CPU = Frame("sleep", "<built-in>", 0)
UNICODE = Frame("señal.ünïcode", "/srv/app/日本.py", 7)


def _delta() -> dict[str, EndpointProfile]:
    report = EndpointProfile(
        "GET /report",
        requests=1200,
        sampled=60,
        errors=3,
        cpu=0.1 + 0.2,
        wall=1e-300,
        latency=Histogram({0: 1, 57: 40, 130: 19}),
        cpu_latency=Histogram({12: 60}),
        stacks={
            (MAIN, RENDER): Weight(samples=20, wall=0.2, cpu=1 / 3),
            (MAIN,): Weight(samples=10, wall=0.1, cpu=0.1),
            (MAIN, SLEEP): Weight(samples=20, wall=0.2, cpu=0.0),
            (MAIN, SLEEP_ON_CPU): Weight(samples=1, wall=5e-324, cpu=2.0**-40),
            (MAIN, OVERFLOW): Weight(samples=7, wall=0.007, cpu=0.006),
            (): Weight(samples=1, wall=0.001, cpu=0.0),
        },
        overflow_samples=7,
        stack_cap=6,
    )
    health = EndpointProfile("GET /health", requests=10_000)
    odd = EndpointProfile(
        "named differently",
        requests=1,
        sampled=1,
        cpu=math.inf,
        stacks={(UNICODE,) * 3: Weight(2**40, 1e308, -0.0)},
    )
    return {"GET /report": report, "GET /health": health, "key differs": odd}


def test_round_trip_is_exact() -> None:
    delta = _delta()

    decoded = decode_delta(encode_delta(delta))

    assert decoded == delta
    assert list(decoded) == list(delta)
    report = decoded["GET /report"]
    assert list(report.stacks) == list(delta["GET /report"].stacks)
    assert report.overflow_samples == 7
    assert report.stack_cap == 6
    assert report.latency.counts == {0: 1, 57: 40, 130: 19}
    assert report.cpu_latency.counts == {12: 60}
    assert report.stacks[(MAIN, SLEEP)] is not delta["GET /report"].stacks[(MAIN, SLEEP)]
    leaves = {stack[-1] for stack in report.stacks if stack}
    assert {frame.off_cpu for frame in leaves if frame.function == "sleep"} == {True, False}
    assert decoded["key differs"].name == "named differently"
    assert decoded["key differs"].cpu == math.inf
    assert math.copysign(1.0, decoded["key differs"].stacks[(UNICODE,) * 3].cpu) == -1.0


def test_nan_survives() -> None:
    profile = EndpointProfile("e", cpu=math.nan, stacks={(MAIN,): Weight(1, math.nan, 0.5)})

    decoded = decode_delta(encode_delta({"e": profile}))["e"]

    assert math.isnan(decoded.cpu)
    assert math.isnan(decoded.stacks[(MAIN,)].wall)


def test_empty_delta_round_trips() -> None:
    assert decode_delta(encode_delta({})) == {}


def test_more_frames_than_16_bits_can_number() -> None:
    stacks: dict[Stack, Weight] = {
        (MAIN, Frame(f"f{i}", "/srv/app/many.py", i)): Weight(1, 0.001, 0.001)
        for i in range(70_000)
    }
    delta = {"e": EndpointProfile("e", stacks=stacks, stack_cap=100_000)}

    assert decode_delta(encode_delta(delta)) == delta


def test_deep_stacks_round_trip() -> None:
    deep = tuple(Frame(f"recurse{i % 3}", "/srv/app/r.py", i % 3) for i in range(5000))
    delta = {"e": EndpointProfile("e", stacks={deep: Weight(3, 0.3, 0.2)})}

    assert decode_delta(encode_delta(delta)) == delta


def test_frames_are_listed_once_and_payload_is_compact() -> None:
    frames = [Frame(f"pkg.f{i}", f"/srv/app/pkg/m{i}.py", i) for i in range(40)]
    stacks: dict[Stack, Weight] = {
        tuple(frames[(i + j) % 40] for j in range(30)): Weight(1, 0.001, 0.001) for i in range(40)
    }
    delta = {f"GET /e{n}": EndpointProfile(f"GET /e{n}", stacks=dict(stacks)) for n in range(20)}

    blob = encode_delta(delta)

    assert zlib.decompress(blob[4:]).count(b"/srv/app/pkg/m17.py") == 1
    assert len(blob) < 20 * 40 * 30


def test_frame_cache_shares_frames_between_decodes() -> None:
    blob = encode_delta(_delta())
    cache: dict[Frame, Frame] = {}

    first = decode_delta(blob, frame_cache=cache)
    second = decode_delta(blob, frame_cache=cache)

    stack_one = next(iter(first["GET /report"].stacks))
    stack_two = next(iter(second["GET /report"].stacks))
    assert stack_one == stack_two
    assert all(a is b for a, b in zip(stack_one, stack_two, strict=True))


def test_header_names_the_version() -> None:
    blob = encode_delta(_delta())

    assert blob[:3] == b"WPD"
    assert blob[3] == CODEC_VERSION


def test_unknown_version_is_refused_clearly() -> None:
    blob = bytearray(encode_delta(_delta()))
    blob[3] = CODEC_VERSION + 1

    with pytest.raises(CodecError, match=rf"version {CODEC_VERSION + 1} is not supported"):
        decode_delta(bytes(blob))


@pytest.mark.parametrize("data", [b"", b"WPD", b"PK\x03\x04 a zip file", b'{"json": 1}'])
def test_foreign_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(CodecError, match="not a wsgiprof delta"):
        decode_delta(data)


def test_corrupt_body_is_refused() -> None:
    blob = encode_delta(_delta())

    with pytest.raises(CodecError, match="corrupt"):
        decode_delta(blob[:-10])
    body = zlib.decompress(blob[4:])
    with pytest.raises(CodecError, match="corrupt"):
        decode_delta(blob[:4] + zlib.compress(body[:-8]))
    with pytest.raises(CodecError, match="corrupt"):
        decode_delta(blob[:4] + zlib.compress(body + b"\0"))


def test_process_round_trip() -> None:
    info = ProcessInfo(
        pid=4242, host="web-1", cpu_percent=96.5, rss_bytes=52428800, threads=8, last_seen=1.5
    )

    data = process_to_dict(info)

    assert process_from_dict(json.loads(json.dumps(data))) == info


def test_process_with_missing_readings_round_trips() -> None:
    info = ProcessInfo(pid=1, host="h", last_seen=2.0)

    assert process_from_dict(process_to_dict(info)) == info


def test_process_ignores_unknown_keys() -> None:
    data = process_to_dict(ProcessInfo(pid=1, host="h", last_seen=2.0)) | {"gpu": 3}

    assert process_from_dict(data) == ProcessInfo(pid=1, host="h", last_seen=2.0)


def test_process_without_pid_is_refused() -> None:
    with pytest.raises(CodecError, match="'pid'"):
        process_from_dict({"host": "h"})


@pytest.mark.parametrize(
    "change", [{"pid": "1"}, {"host": 3}, {"rss_bytes": 1.5}, {"cpu_percent": True}]
)
def test_process_with_wrong_types_is_refused(change: dict[str, object]) -> None:
    data = process_to_dict(ProcessInfo(pid=1, host="h")) | change

    with pytest.raises(CodecError, match="wrong type"):
        process_from_dict(data)


def _sequential_merge(blobs: list[bytes]) -> dict[str, EndpointProfile]:
    merged: dict[str, EndpointProfile] = {}
    for blob in blobs:
        for key, profile in decode_delta(blob).items():
            if key in merged:
                merged[key].merge(profile)
            else:
                merged[key] = profile
    return merged


def _capped_delta(offset: int) -> dict[str, EndpointProfile]:
    profile = EndpointProfile("GET /capped", requests=1, sampled=1, stack_cap=4)
    profile.latency.add(0.01 * offset)
    for i in range(offset, offset + 3):
        stacks: dict[Stack, Weight] = {
            (MAIN, Frame(f"leaf{i}", "/srv/app/l.py", i)): Weight(i, 0.5, 0.25)
        }
        profile.add_stacks(stacks)
    return {"GET /capped": profile, **_delta()}


def test_merger_equals_merging_decoded_deltas_in_order() -> None:
    blobs = [encode_delta(_capped_delta(offset)) for offset in (0, 2, 4, 0)]

    merger = DeltaMerger()
    for blob in blobs:
        merger.add(blob)
    merged = merger.result()

    assert merged == _sequential_merge(blobs)
    capped = merged["GET /capped"]
    assert len(capped.stacks) > 4
    assert capped.overflow_samples > 0
    assert sum(w.samples for w in capped.stacks.values()) == 3 + 9 + 15 + 3
    assert merger.added == 4


def test_merging_a_merged_delta_again_changes_nothing() -> None:
    merger = DeltaMerger()
    for offset in (0, 2, 4):
        merger.add(encode_delta(_capped_delta(offset)))
    once = merger.result()

    again = DeltaMerger()
    again.add(encode_delta(once))

    assert again.result() == once


def test_merger_leaves_out_a_bad_delta_entirely() -> None:
    merger = DeltaMerger()
    merger.add(encode_delta(_delta()))
    blob = encode_delta(_delta())

    with pytest.raises(CodecError):
        merger.add(blob[:4] + zlib.compress(zlib.decompress(blob[4:])[:-8]))

    assert merger.result() == _delta()
    assert merger.added == 1
