"""Facts about the machine and software a run happened on, for RESULTS.md."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess

PACKAGES = (
    "wsgiprof",
    "pyinstrument",
    "werkzeug",
    "flask",
    "gunicorn",
    "yappi",
    "py-spy",
    "matplotlib",
    "psutil",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "not installed"
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def facts() -> dict[str, str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "load average at start": " ".join(f"{x:.2f}" for x in load),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "wrk": _wrk_version(),
    }
    result |= {package: _version(package) for package in PACKAGES}
    return result
