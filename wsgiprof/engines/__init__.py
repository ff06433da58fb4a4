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
]


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
        from wsgiprof.engines.pyroscope import PyroscopeEngine, unavailable_reason

        reason = unavailable_reason()
        if reason is not None:
            raise ConfigError(
                "WSGIPROF_ENGINE", config.engine, f"pyinstrument or yappi here: pyroscope {reason}"
            )
        return PyroscopeEngine(interval=config.interval)
    raise NotImplementedError(f"engine {config.engine!r} is not available yet")
