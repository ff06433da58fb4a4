"""A small, realistic Flask API whose endpoints have different cost shapes.

- ``GET /report``: pure-Python CPU work, split between building rows and rendering them;
- ``POST /login``: C-level CPU work (PBKDF2 password hashing, which releases the GIL);
- ``GET /users/<int:user_id>``: an in-process SQLite query plus JSON encoding;
- ``GET /inventory``: mostly waiting on a slow upstream service;
- ``GET /health``: a cheap health check.

wsgiprof is switched on with one line (see the bottom) and stays inert unless
``WSGIPROF_ENABLED=1``. ``EXAMPLE_FAST_REPORT=1`` makes the hot function cheaper, so a second
load run shows the difference.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import threading
import time
from typing import Any

from flask import Flask, jsonify, request

from wsgiprof import ProfilerMiddleware

app = Flask(__name__)

FAST_REPORT = os.environ.get("EXAMPLE_FAST_REPORT", "") == "1"
UPSTREAM_LATENCY = float(os.environ.get("EXAMPLE_UPSTREAM_LATENCY", "0.03"))
_DB_URI = "file:example?mode=memory&cache=shared"
_local = threading.local()


@functools.cache
def _create_db() -> sqlite3.Connection:
    """Create the shared in-memory database once; the returned connection keeps it alive."""
    keeper = sqlite3.connect(_DB_URI, uri=True, check_same_thread=False)
    keeper.execute(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT, score REAL)"
    )
    keeper.executemany(
        "INSERT OR IGNORE INTO users VALUES (?, ?, ?)",
        ((i, f"user-{i}", (i * 7919) % 1000 / 10) for i in range(5000)),
    )
    keeper.execute("CREATE INDEX IF NOT EXISTS users_score ON users (score)")
    keeper.commit()
    return keeper


_create_lock = threading.Lock()


def _db() -> sqlite3.Connection:
    """This thread's connection to the example database."""
    connection: sqlite3.Connection | None = getattr(_local, "db", None)
    if connection is None:
        with _create_lock:
            _create_db()
        connection = _local.db = sqlite3.connect(_DB_URI, uri=True)
    return connection


def build_rows(count: int) -> list[dict[str, Any]]:
    """Build report rows: the smaller part of the report's CPU."""
    return [{"id": i, "amount": (i * 37) % 1000 / 7, "label": f"item {i}"} for i in range(count)]


def render_rows(rows: list[dict[str, Any]]) -> str:
    """Render rows as text: the hot function of the example."""
    if FAST_REPORT:
        return "\n".join(
            f"{row['id']:>6} {row['label']:<12} {row['amount']:>10.2f}" for row in rows
        )
    lines = []
    for row in rows:
        cells = []
        for key in ("id", "label", "amount"):
            value = row[key]
            text = f"{value:.2f}" if isinstance(value, float) else str(value)
            cells.append(text.rjust(12))
        lines.append("|".join(cells))
    return "\n".join(lines)


@app.get("/report")
def report() -> Any:
    rows = build_rows(2000)
    text = render_rows(rows)
    return jsonify(lines=text.count("\n") + 1, size=len(text))


@app.post("/login")
def login() -> Any:
    password = (request.get_json(silent=True) or {}).get("password", "hunter2")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), b"example-salt", 20_000)
    return jsonify(ok=True, token=digest.hex()[:16])


@app.get("/users/<int:user_id>")
def user(user_id: int) -> Any:
    row = (
        _db()
        .execute("SELECT id, name, score FROM users WHERE id = ?", (user_id % 5000,))
        .fetchone()
    )
    friends = (
        _db()
        .execute("SELECT id, name FROM users WHERE score > ? ORDER BY score LIMIT 50", (row[2],))
        .fetchall()
    )
    return jsonify(id=row[0], name=row[1], score=row[2], friends=[f[1] for f in friends])


def call_inventory_service() -> dict[str, int]:
    """Stands for an HTTP call to a slow upstream service."""
    time.sleep(UPSTREAM_LATENCY)
    return {"widgets": 12, "gadgets": 7}


@app.get("/inventory")
def inventory() -> Any:
    return jsonify(call_inventory_service())


@app.get("/health")
def health() -> Any:
    return {"status": "ok"}


app.wsgi_app = ProfilerMiddleware(app.wsgi_app)  # type: ignore[method-assign]
