"""Profiling engines behind one small protocol (see :mod:`wsgiprof.engines.base`)."""

from __future__ import annotations

from wsgiprof.config import Config
from wsgiprof.engines.base import ActiveProfile, Capture, Engine, EngineUnavailableError

__all__ = ["ActiveProfile", "Capture", "Engine", "EngineUnavailableError", "create_engine"]


def create_engine(config: Config) -> Engine:
    """Build the engine the configuration names."""
    if config.engine == "pyinstrument":
        from wsgiprof.engines.pyinstrument import PyinstrumentEngine

        return PyinstrumentEngine(
            interval=config.interval, off_cpu_functions=config.off_cpu_functions
        )
    raise NotImplementedError(f"engine {config.engine!r} is not available yet")
