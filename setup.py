"""The C extension of the CPU-timer engine; everything else is in pyproject.toml.

The extension is Linux-only code; elsewhere it compiles to a module that says it is not supported.
It is optional: if it cannot be built (no compiler), the package installs without it and the
engine says so when chosen.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wsgiprof._cpusampler",
            sources=["wsgiprof/_cpusampler.c"],
            optional=True,
        )
    ]
)
