"""Stores: where per-process deltas are flushed and merged (memory, SQLite, Redis).

A store is named by a URL, the value of ``WSGIPROF_STORE``:

- ``memory``: this process only (single-process servers, tests);
- ``sqlite:///<path>``: one SQLite file shared by the processes of a host. As in SQLAlchemy, the
  three slashes end the scheme and the path follows, so ``sqlite:///profiles.db`` is relative to
  the working directory and ``sqlite:////var/tmp/profiles.db`` (four slashes) is absolute.
- ``redis://host:port/db`` (``rediss://`` for TLS): one Redis shared by every host; needs the
  ``redis`` extra (redis-py).

Example::

    store = open_store("sqlite:////var/tmp/wsgiprof-1000/shop.sqlite3", app_name="shop")
"""

from __future__ import annotations

import importlib.util

from wsgiprof.stores.base import ProcessInfo, Snapshot, Store
from wsgiprof.stores.memory import MemoryStore

__all__ = [
    "SQLITE_PREFIX",
    "MemoryStore",
    "ProcessInfo",
    "Snapshot",
    "Store",
    "available_schemes",
    "open_store",
    "sqlite_path",
]

SQLITE_PREFIX = "sqlite:///"


def available_schemes() -> frozenset[str]:
    """Store kinds this installation can open (``sqlite`` needs Python's ``sqlite3`` module,
    ``redis`` needs redis-py, found without importing it)."""
    schemes = {"memory"}
    try:
        import sqlite3  # noqa: F401
    except ImportError:  # pragma: no cover - Python built without SQLite
        pass
    else:
        schemes.add("sqlite")
    if importlib.util.find_spec("redis") is not None:
        schemes.add("redis")
    return frozenset(schemes)


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///<path>`` URL (SQLAlchemy's convention, see the module)."""
    if not url.startswith(SQLITE_PREFIX) or len(url) == len(SQLITE_PREFIX):
        raise ValueError(f"{url!r} is not a sqlite:///<path> URL")
    return url[len(SQLITE_PREFIX) :]


def open_store(url: str, *, app_name: str = "wsgiprof") -> Store:
    """Open the store named by a ``WSGIPROF_STORE`` value (already validated by the config).

    ``app_name`` keeps the windows of several applications apart in one shared store.
    """
    if url == "memory":
        return MemoryStore()
    if url.startswith(SQLITE_PREFIX) and "sqlite" in available_schemes():
        from wsgiprof.stores.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url), app_name=app_name)
    if url.startswith(("redis://", "rediss://")) and "redis" in available_schemes():
        from wsgiprof.stores.redis import RedisStore

        return RedisStore(url, app_name=app_name)
    raise ValueError(f"store {url!r} is not available in this installation")
