"""The WSGI app gunicorn serves in the end-to-end benchmark: ``BENCH_VARIANT`` picks the variant.

Run by :mod:`benchmarks.endtoend` as ``gunicorn benchmarks.server_app:app``.
"""

from __future__ import annotations

import os

from benchmarks.apps import shapes_app
from benchmarks.variants import build

app = build(os.environ.get("BENCH_VARIANT", "bare"), shapes_app)
