"""Configuration: one frozen dataclass, parsed once from the environment or from keyword arguments.

Example::

    config = Config.from_env()                      # reads WSGIPROF_* variables
    config = Config(enabled=True, token="s3cret", sample_rate=0.2, store="memory")

A bad value stops start-up with a :class:`ConfigError` that names the variable, the value and
what is accepted, so a typo in a deployment fails loudly instead of profiling nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "WSGIPROF_"
ENGINES = ("pyinstrument", "yappi", "pyroscope", "cputimer")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the setting, the value and what is
    accepted."""

    def __init__(self, variable: str, value: object, accepted: str) -> None:
        self.variable = variable
        self.value = value
        self.accepted = accepted
        super().__init__(f"{variable}={value!r} is invalid: expected {accepted}")


def default_store(app_name: str = "wsgiprof") -> str:
    """The default store: a SQLite file in a per-user temporary folder named for the application."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", app_name) or "app"
    folder = os.path.join(tempfile.gettempdir(), f"wsgiprof-{user}")
    return f"sqlite:///{os.path.join(folder, safe + '.sqlite3')}"


@dataclass(frozen=True)
class Config:
    """Every setting of wsgiprof. Field names match the ``WSGIPROF_<NAME>`` variables.

    ``enabled``: profile at all; when false the middleware is a pure pass-through.
    ``sample_rate``: fraction of requests profiled, 0 to 1.
    ``token``: secret for the route; with no token the route is not served at all.
    ``path``: prefix of the route.
    ``engine``: ``pyinstrument`` (sampling, default), ``yappi`` (tracing), ``cputimer``
    (hook-free sampling on each thread's CPU clock, Linux) or ``pyroscope`` (the same through
    pyroscope-io, CPython 3.12+ on Linux).
    ``interval``: the sampling interval in seconds: wall time between pyinstrument's samples,
    CPU time between the samples of a thread for cputimer and pyroscope (whole milliseconds for
    pyroscope).
    ``yappi_window``: seconds each yappi window lasts; windows are spaced so that yappi is on
    for about ``sample_rate`` of the time.
    ``store``: ``memory``, ``sqlite:///path`` or ``redis://host:port/db``.
    ``flush_interval``: seconds between flushes of a worker's deltas to a shared store.
    ``max_endpoints``: distinct endpoints kept before new ones go to an overflow bucket.
    ``stack_cap``: distinct stacks kept per endpoint before new ones are merged.
    ``off_cpu_functions``: extra names of blocking calls, added to the built-in list.
    ``app_name``: names the default store file and the keys of shared stores.
    ``max_overhead``: when above 0, the fraction of request time profiling may cost; the
    effective sample rate is lowered (never raised above ``sample_rate``) to stay within it.
    """

    enabled: bool = False
    sample_rate: float = 0.05
    token: str | None = None
    path: str = "/_wsgiprof"
    engine: str = "pyinstrument"
    interval: float = 0.001
    yappi_window: float = 2.0
    store: str = "memory"
    flush_interval: float = 1.0
    max_endpoints: int = 500
    stack_cap: int = 5000
    off_cpu_functions: frozenset[str] = field(default_factory=frozenset)
    app_name: str = "wsgiprof"
    max_overhead: float = 0.0

    def __post_init__(self) -> None:
        _check_range("sample_rate", self.sample_rate, 0.0, 1.0)
        _check_range("interval", self.interval, 1e-5, 1.0)
        _check_range("yappi_window", self.yappi_window, 0.01, 3600.0)
        _check_range("flush_interval", self.flush_interval, 0.01, 3600.0)
        _check_range("max_overhead", self.max_overhead, 0.0, 0.5)
        if self.engine not in ENGINES:
            raise ConfigError(_var("engine"), self.engine, " or ".join(ENGINES))
        if not (self.path.startswith("/") and len(self.path) > 1 and not self.path.endswith("/")):
            raise ConfigError(
                _var("path"), self.path, "a path such as /_wsgiprof (leading /, no trailing /)"
            )
        if self.token is not None and (len(self.token) < 8 or self.token != self.token.strip()):
            raise ConfigError(
                _var("token"), "<hidden>", "at least 8 characters without surrounding spaces"
            )
        if not (
            self.store == "memory"
            or self.store.startswith("sqlite:///")
            or re.fullmatch(r"rediss?://[^/\s]+(/\d+)?", self.store)
        ):
            raise ConfigError(
                _var("store"), self.store, "memory, sqlite:///path or redis://host:port/db"
            )
        for name in ("max_endpoints", "stack_cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(_var(name), value, "a whole number of at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read ``WSGIPROF_*`` variables; keyword ``overrides`` win over the environment.

        When no store is set, the default is a SQLite file named for the application when a shared
        store is available, else the in-memory store.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            raw = env.get(_var(item.name))
            if raw is not None:
                values[item.name] = _PARSERS.get(item.name, _parse_str)(item.name, raw)
        values.update(overrides)
        if "store" not in values:
            values["store"] = _default_store_for(values.get("app_name", "wsgiprof"))
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _default_store_for(app_name: str) -> str:
    from wsgiprof.stores import available_schemes

    if "sqlite" in available_schemes():
        return default_store(app_name)
    return "memory"


def _var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not low <= value <= high
    ):
        raise ConfigError(_var(name), value, f"a number from {low:g} to {high:g}")


def _parse_str(name: str, raw: str) -> str:
    return raw


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(_var(name), raw, "1/true/yes/on or 0/false/no/off")


def _parse_float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(_var(name), raw, "a number") from None


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(_var(name), raw, "a whole number") from None


def _parse_token(name: str, raw: str) -> str | None:
    return raw or None


def _parse_names(name: str, raw: str) -> frozenset[str]:
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "enabled": _parse_bool,
    "sample_rate": _parse_float,
    "interval": _parse_float,
    "yappi_window": _parse_float,
    "flush_interval": _parse_float,
    "max_overhead": _parse_float,
    "max_endpoints": _parse_int,
    "stack_cap": _parse_int,
    "token": _parse_token,
    "off_cpu_functions": _parse_names,
}
