"""The configurations compared: bare app, wsgiprof in its settings, and werkzeug's profiler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsgiprof import Config, ProfilerMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

INPROCESS_VARIANTS: tuple[str, ...] = (
    "bare",
    "disabled",
    "rate0",
    "rate1",
    "rate10",
    "rate100",
    "yappi100",
    "werkzeug",
)
ENDTOEND_VARIANTS: tuple[str, ...] = (
    "bare",
    "disabled",
    "rate1",
    "rate5",
    "rate100",
    "werkzeug",
)

TITLES: dict[str, str] = {
    "bare": "bare app",
    "disabled": "wsgiprof disabled",
    "rate0": "wsgiprof on, rate 0",
    "rate1": "wsgiprof 1% (pyinstrument)",
    "rate5": "wsgiprof 5% (pyinstrument)",
    "rate10": "wsgiprof 10% (pyinstrument)",
    "rate100": "wsgiprof 100% (pyinstrument)",
    "yappi100": "wsgiprof 100% (yappi)",
    "werkzeug": "werkzeug ProfilerMiddleware (cProfile, every request)",
}


class VariantUnavailableError(RuntimeError):
    """This configuration cannot be built here (an engine not implemented or not installed)."""


def config_for(rate: float, engine: str = "pyinstrument") -> Config:
    return Config(enabled=True, sample_rate=rate, token=None, store="memory", engine=engine)


def build(name: str, app: WSGIApplication) -> WSGIApplication:
    """``app`` wrapped as the named variant; :class:`VariantUnavailableError` when it can't be."""
    if name == "bare":
        return app
    if name == "disabled":
        return ProfilerMiddleware(app, config=Config(enabled=False))
    if name.startswith("rate"):
        return ProfilerMiddleware(app, config=config_for(int(name[4:]) / 100))
    if name == "yappi100":
        try:
            return ProfilerMiddleware(app, config=config_for(1.0, "yappi"))
        except (NotImplementedError, ImportError) as exc:
            raise VariantUnavailableError(f"not available yet ({exc})") from exc
    if name == "werkzeug":
        from werkzeug.middleware.profiler import ProfilerMiddleware as WerkzeugProfiler

        return WerkzeugProfiler(app, stream=None, profile_dir=None)
    raise ValueError(f"unknown variant {name!r}")
