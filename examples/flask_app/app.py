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
_local = threading.local()


def _db() -> sqlite3.Connection:
    connection: sqlite3.Connection | None = getattr(_local, "db", None)
    if connection is None:
        connection = sqlite3.connect(":memory:")
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
        connection.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            ((i, f"user-{i}", (i * 7919) % 1000 / 10) for i in range(5000)),
        )
        _local.db = connection
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
