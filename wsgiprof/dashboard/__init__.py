"""The protected route of wsgiprof: JSON API, profile downloads and pages, behind the token.

Example::

    from wsgiprof.dashboard import Dashboard

    dashboard = Dashboard(config, read=store.read, reset=store.reset, engine="pyinstrument")
"""

from __future__ import annotations

from wsgiprof.dashboard.api import Dashboard

__all__ = ["Dashboard"]
