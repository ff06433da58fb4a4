"""pprof: a gzipped Profile protobuf, decoded here by hand and read back by ``go tool pprof``."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import unavailable
from wsgiprof.export import get_exporter
from wsgiprof.export.pprof import PprofExporter, varint
from wsgiprof.model import EndpointProfile, Frame, Weight

MAIN = Frame("app.handler", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
QUERY = Frame("run_query", "/srv/app/db.py", 7)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)
FIB = Frame("fib", "/srv/app/maths.py", 3)

REPORT = EndpointProfile(
    "GET /report",
    stacks={
        (MAIN, RENDER): Weight(samples=30, wall=0.030, cpu=0.025),
        (MAIN, QUERY, SLEEP): Weight(samples=50, wall=0.050, cpu=0.0),
        (MAIN, QUERY): Weight(samples=10, wall=0.010, cpu=0.004),
    },
)

Fields = dict[int, list[int | bytes]]


def parse(data: bytes) -> Fields:
    """Field number -> values (ints for varints, bytes for length-delimited) of one message."""
    fields: Fields = {}
    pos = 0

    def read_varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(data):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields.setdefault(number, []).append(read_varint())
        elif wire == 2:
            length = read_varint()
            fields.setdefault(number, []).append(data[pos : pos + length])
            pos += length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return fields


def packed(blob: int | bytes) -> list[int]:
    assert isinstance(blob, bytes)
    values, value, shift = [], 0, 0
    for byte in blob:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            values.append(value)
            value = shift = 0
    return values


def sub(blob: int | bytes) -> Fields:
    assert isinstance(blob, bytes)
    return parse(blob)


def one(fields: Fields, number: int) -> int:
    (value,) = fields.get(number, [0])
    assert isinstance(value, int)
    return value


@dataclass
class Decoded:
    strings: list[str]
    sample_types: list[tuple[str, str]]
    period_type: tuple[str, str]
    default_sample_type: str
    functions: dict[int, tuple[str, str, str, int]] = field(default_factory=dict)
    locations: dict[int, int] = field(default_factory=dict)
    samples: list[tuple[list[str], list[int], dict[str, str]]] = field(default_factory=list)


def decode(data: bytes) -> Decoded:
    profile = parse(gzip.decompress(data))
    strings = [bytes(s).decode("utf-8") for s in profile.get(6, []) if isinstance(s, bytes)]

    def value_type(blob: int | bytes) -> tuple[str, str]:
        fields = sub(blob)
        return strings[one(fields, 1)], strings[one(fields, 2)]

    (period,) = profile[11]
    decoded = Decoded(
        strings=strings,
        sample_types=[value_type(v) for v in profile[1]],
        period_type=value_type(period),
        default_sample_type=strings[one(profile, 14)],
    )
    for blob in profile.get(5, []):
        function = sub(blob)
        decoded.functions[one(function, 1)] = (
            strings[one(function, 2)],
            strings[one(function, 3)],
            strings[one(function, 4)],
            one(function, 5),
        )
    for blob in profile.get(4, []):
        location = sub(blob)
        (line_blob,) = location[4]
        decoded.locations[one(location, 1)] = one(sub(line_blob), 1)
    for blob in profile.get(2, []):
        sample = sub(blob)
        names = [decoded.functions[decoded.locations[i]][0] for i in packed(sample[1][0])]
        labels = {strings[one(lab, 1)]: strings[one(lab, 2)] for lab in map(sub, sample.get(3, []))}
        decoded.samples.append((names, packed(sample[2][0]), labels))
    return decoded


def test_varint_encoding_matches_the_protobuf_examples() -> None:
    assert varint(1) == b"\x01"
    assert varint(150) == b"\x96\x01"
    assert varint(-1) == b"\xff" * 9 + b"\x01"


def test_string_table_starts_with_the_empty_string() -> None:
    decoded = decode(PprofExporter().export([REPORT], "cpu"))
    assert decoded.strings[0] == ""
    assert len(set(decoded.strings)) == len(decoded.strings)


def test_cpu_sample_and_period_types() -> None:
    decoded = decode(PprofExporter().export([REPORT], "cpu"))
    assert decoded.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert decoded.period_type == ("cpu", "nanoseconds")
    assert decoded.default_sample_type == "cpu"


def test_wall_sample_and_period_types() -> None:
    decoded = decode(PprofExporter().export([REPORT], "wall"))
    assert decoded.sample_types == [("samples", "count"), ("wall", "nanoseconds")]
    assert decoded.period_type == ("wall", "nanoseconds")


def test_samples_are_leaf_first_with_counts_nanoseconds_and_endpoint_label() -> None:
    decoded = decode(PprofExporter().export([REPORT], "wall"))
    assert decoded.samples == [
        (["render_rows", "app.handler"], [30, 30_000_000], {"endpoint": "GET /report"}),
        (["run_query", "app.handler"], [10, 10_000_000], {"endpoint": "GET /report"}),
        (
            ["sleep [off-CPU]", "run_query", "app.handler"],
            [50, 50_000_000],
            {"endpoint": "GET /report"},
        ),
    ]


def test_cpu_leaves_out_stacks_without_cpu() -> None:
    decoded = decode(PprofExporter().export([REPORT], "cpu"))
    assert [values for _, values, _ in decoded.samples] == [[30, 25_000_000], [10, 4_000_000]]


def test_functions_keep_full_file_first_line_and_plain_system_name() -> None:
    decoded = decode(PprofExporter().export([REPORT], "wall"))
    assert sorted(decoded.functions.values()) == [
        ("app.handler", "app.handler", "/srv/app/views.py", 10),
        ("render_rows", "render_rows", "/srv/app/report.py", 40),
        ("run_query", "run_query", "/srv/app/db.py", 7),
        ("sleep [off-CPU]", "sleep", "<built-in>", 0),
    ]


def test_recursion_repeats_one_location() -> None:
    fibs = EndpointProfile("GET /fib", stacks={(MAIN, FIB, FIB): Weight(2, 0.002, 0.002)})
    decoded = decode(PprofExporter().export([fibs], "cpu"))
    assert decoded.samples == [
        (["fib", "fib", "app.handler"], [2, 2_000_000], {"endpoint": "GET /fib"})
    ]
    assert len(decoded.locations) == 2


def test_each_endpoint_labels_its_own_samples() -> None:
    users = EndpointProfile('GET /users/<int:id> "é"', stacks={(MAIN,): Weight(3, 0.003, 0.002)})
    decoded = decode(PprofExporter().export([REPORT, users], "cpu"))
    assert [labels["endpoint"] for _, _, labels in decoded.samples] == [
        "GET /report",
        "GET /report",
        'GET /users/<int:id> "é"',
    ]
    assert decoded.samples[2][0] == ["app.handler"]


def test_empty_input_is_a_valid_profile_without_samples() -> None:
    decoded = decode(PprofExporter().export([], "cpu"))
    assert decoded.strings[0] == ""
    assert decoded.samples == []
    assert decoded.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]


def test_output_is_deterministic() -> None:
    assert PprofExporter().export([REPORT], "cpu") == PprofExporter().export([REPORT], "cpu")


def go_pprof(tmp_path: Path, profile: bytes, *args: str) -> str:
    go = shutil.which("go")
    if go is None:
        unavailable("go is not installed (Debian's golang-go)")
    path = tmp_path / "profile.pb.gz"
    path.write_bytes(profile)
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        GOCACHE=str(tmp_path / "gocache"),
        GOPATH=str(tmp_path / "gopath"),
        PPROF_TMPDIR=str(tmp_path),
    )
    result = subprocess.run(
        [go, "tool", "pprof", *args, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return result.stdout


def top_rows(output: str) -> list[list[str]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["flat", "flat%"])
    return [line.split(None, 5) for line in lines[start + 1 :]]


def test_go_tool_pprof_ranks_the_top_cpu_function(tmp_path: Path) -> None:
    output = go_pprof(
        tmp_path, PprofExporter().export([REPORT], "cpu"), "-top", "-sample_index=cpu"
    )
    assert "Type: cpu" in output
    assert "29ms total" in output
    assert top_rows(output)[0] == ["25ms", "86.21%", "86.21%", "25ms", "86.21%", "render_rows"]


def test_go_tool_pprof_shows_the_off_cpu_leaf_in_wall_time(tmp_path: Path) -> None:
    output = go_pprof(
        tmp_path, PprofExporter().export([REPORT], "wall"), "-top", "-sample_index=wall"
    )
    assert top_rows(output)[0] == ["50ms", "55.56%", "55.56%", "50ms", "55.56%", "sleep [off-CPU]"]


def test_go_tool_pprof_filters_by_endpoint_label(tmp_path: Path) -> None:
    users = EndpointProfile("GET /users", stacks={(MAIN, QUERY): Weight(7, 0.007, 0.007)})
    output = go_pprof(
        tmp_path,
        PprofExporter().export([REPORT, users], "cpu"),
        "-top",
        "-tagfocus=endpoint=GET /users",
    )
    rows = top_rows(output)
    assert [row[-1] for row in rows] == ["run_query", "app.handler"]
    assert rows[0][:2] == ["7ms", "19.44%"]
    assert rows[1][3] == "7ms"


def test_go_tool_pprof_raw_lists_the_samples(tmp_path: Path) -> None:
    output = go_pprof(tmp_path, PprofExporter().export([REPORT], "cpu"), "-raw")
    assert "samples/count cpu/nanoseconds[dflt]" in output
    assert re.search(r"^\s*30\s+25000000: \d+ \d+\s*$", output, re.MULTILINE)
    assert "endpoint:[GET /report]" in output


def test_registry_serves_the_pprof_exporter() -> None:
    assert isinstance(get_exporter("pb.gz"), PprofExporter)
