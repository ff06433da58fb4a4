"""Stores: where per-process deltas are flushed and merged (memory, SQLite, Redis)."""

from __future__ import annotations

from wsgiprof.stores.base import ProcessInfo, Snapshot, Store
from wsgiprof.stores.memory import MemoryStore

__all__ = ["MemoryStore", "ProcessInfo", "Snapshot", "Store", "available_schemes", "open_store"]


def available_schemes() -> frozenset[str]:
    """Store kinds this installation can open."""
    return frozenset({"memory"})


def open_store(url: str) -> Store:
    """Open the store named by a ``WSGIPROF_STORE`` value (already validated by the config)."""
    if url == "memory":
        return MemoryStore()
    raise ValueError(f"store {url!r} is not available in this installation")
