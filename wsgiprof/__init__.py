"""wsgiprof: sampled, per-endpoint CPU profiles of a WSGI application under real load.

Wrap once, switch on with ``WSGIPROF_ENABLED=1``::

    from wsgiprof import ProfilerMiddleware
    app.wsgi_app = ProfilerMiddleware(app.wsgi_app)
"""

from __future__ import annotations

from wsgiprof.config import Config, ConfigError
from wsgiprof.middleware import ProfilerMiddleware

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "ProfilerMiddleware", "__version__"]
