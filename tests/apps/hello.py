"""A tiny WSGI app for server self-tests.

``GET /`` answers JSON ``{"pid": ..., "thread": ...}``; ``?sleep=0.05`` sleeps first, so that
concurrent requests spread over workers and threads.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

MAX_SLEEP = 2.0


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    sleep = min(float(query.get("sleep", ["0"])[0]), MAX_SLEEP)
    if sleep > 0:
        time.sleep(sleep)
    body = json.dumps({"pid": os.getpid(), "thread": threading.get_ident()}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
