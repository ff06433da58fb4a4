"""Bytes of saved runs and of request rows, shared by the SQLite and Redis stores.

A saved run is one immutable blob::

    b"WPR" <version byte> <u32 length of meta> <meta: UTF-8 JSON> <an encode_delta payload>

The meta holds the window (start, end), the process readings and the lost flushes; the endpoints
are a delta of the existing codec (:func:`wsgiprof.stores.codec.encode_delta`), so a run costs
what one compacted window costs and decodes with the same checks. Request rows travel as compact
JSON arrays (:meth:`RequestRow.to_list`).

Example::

    blob = encode_run(store.read())
    snapshot = decode_run(blob)      # the same window, endpoints and processes
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence

from wsgiprof.stores.base import RequestRow, Snapshot
from wsgiprof.stores.codec import CodecError, decode_delta, encode_delta, process_from_dict
from wsgiprof.stores.codec import process_to_dict as _process_to_dict

__all__ = ["decode_rows", "decode_run", "encode_rows", "encode_run"]

RUN_VERSION = 1
_MAGIC = b"WPR"
_HEADER = _MAGIC + bytes((RUN_VERSION,))
_LENGTH = struct.Struct("<I")


def encode_run(snapshot: Snapshot) -> bytes:
    """Serialise a merged snapshot as a saved run (see the module for the layout)."""
    meta = {
        "window": [snapshot.window_start, snapshot.window_end],
        "processes": [_process_to_dict(process) for process in snapshot.processes],
        "lost_flushes": snapshot.lost_flushes,
    }
    text = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    return _HEADER + _LENGTH.pack(len(text)) + text + encode_delta(snapshot.endpoints)


def decode_run(data: bytes) -> Snapshot:
    """Rebuild the snapshot of a saved run; :class:`CodecError` for anything else."""
    if data[: len(_MAGIC)] != _MAGIC or len(data) < len(_HEADER) + _LENGTH.size:
        raise CodecError("not a saved wsgiprof run (bad header)")
    if data[len(_MAGIC)] != RUN_VERSION:
        raise CodecError(f"saved run format version {data[len(_MAGIC)]} is not supported")
    (length,) = _LENGTH.unpack_from(data, len(_HEADER))
    start = len(_HEADER) + _LENGTH.size
    try:
        meta = json.loads(data[start : start + length].decode("utf-8"))
        window_start, window_end = (float(value) for value in meta["window"])
        processes = [process_from_dict(item) for item in meta["processes"]]
        lost = int(meta.get("lost_flushes", 0))
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"corrupt saved run: {exc!r}") from None
    endpoints = decode_delta(data[start + length :])
    return Snapshot(window_start, window_end, endpoints, processes, lost)


def encode_rows(rows: Iterable[RequestRow]) -> list[str]:
    """Each row as a compact JSON array (one Redis list entry or one SQLite value each)."""
    return [json.dumps(row.to_list(), separators=(",", ":")) for row in rows]


def decode_rows(items: Sequence[str | bytes]) -> list[RequestRow]:
    """Rows encoded by :func:`encode_rows`; malformed entries are left out."""
    rows = []
    for item in items:
        try:
            values = json.loads(item)
            if isinstance(values, list):
                rows.append(RequestRow.from_list(values))
        except ValueError:
            continue
    return rows
