"""Profiling engines behind one small protocol (see :mod:`wsgiprof.engines.base`)."""

from __future__ import annotations

from wsgiprof.config import Config, ConfigError
from wsgiprof.engines.base import (
    ActiveProfile,
    CallGraphSink,
    Capture,
    DeferredEngine,
    Engine,
    EngineUnavailableError,
    RootedProfile,
    StackSink,
    WindowedEngine,
    WindowFacts,
)

__all__ = [
    "ActiveProfile",
    "CallGraphSink",
    "Capture",
    "DeferredEngine",
    "Engine",
    "EngineUnavailableError",
    "RootedProfile",
    "StackSink",
    "WindowFacts",
    "WindowedEngine",
    "create_engine",
    "engine_reason",
]


_REASONS = {
    "pyinstrument": (
        "the default engine. The hook-free engine (WSGIPROF_ENGINE=pyroscope, CPython 3.12+) is "
        "not the default: under load its samples lag by about a millisecond of CPU, more than "
        "its accuracy targets allow (docs/hook-free-engine.md)"
    ),
    "yappi": "chosen with WSGIPROF_ENGINE: exact CPU and call counts, in windows",
    "pyroscope": "chosen with WSGIPROF_ENGINE: hook-free sampling on each thread's CPU clock",
    "cputimer": (
        "chosen with WSGIPROF_ENGINE: hook-free sampling on each thread's CPU clock, from a "
        "signal handler on the thread"
    ),
}


def engine_reason(name: str) -> str:
    """Why this engine profiled the window, in a sentence for the summary and the page."""
    return _REASONS.get(name, "chosen with WSGIPROF_ENGINE")


def create_engine(config: Config) -> Engine:
    """Build the engine the configuration names.

    Raises :class:`~wsgiprof.config.ConfigError` naming ``WSGIPROF_ENGINE`` when the engine's
    package is not installed, so start-up fails with the fix in the message.
    """
    if config.engine == "pyinstrument":
        from wsgiprof.engines.pyinstrument import PyinstrumentEngine

        return PyinstrumentEngine(
            interval=config.interval, off_cpu_functions=config.off_cpu_functions
        )
    if config.engine == "yappi":
        try:
            from wsgiprof.engines.yappi import YappiEngine
        except ImportError as exc:
            raise ConfigError(
                "WSGIPROF_ENGINE",
                config.engine,
                f"pyinstrument, or install yappi for this engine: pip install 'wsgiprof[yappi]' "
                f"({exc})",
            ) from exc
        return YappiEngine(sample_rate=config.sample_rate, window=config.yappi_window)
    if config.engine == "pyroscope":
        from wsgiprof.engines import pyroscope

        _refuse_unless_available(config.engine, pyroscope.unavailable_reason())
        return pyroscope.PyroscopeEngine(interval=config.interval)
    if config.engine == "cputimer":
        from wsgiprof.engines import cputimer

        _refuse_unless_available(config.engine, cputimer.unavailable_reason())
        return cputimer.CpuTimerEngine(interval=config.interval)
    raise NotImplementedError(f"engine {config.engine!r} is not available yet")


def _refuse_unless_available(engine: str, reason: str | None) -> None:
    """Stop start-up, naming ``WSGIPROF_ENGINE``, when the engine says it cannot run here."""
    if reason is not None:
        accepted = f"pyinstrument or yappi here: {engine} {reason}"
        raise ConfigError("WSGIPROF_ENGINE", engine, accepted)
