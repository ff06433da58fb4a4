"""Names of a source file's functions, read from its compiled source (for samplers that see code
objects only by their names and lines)."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

_FUNCTION_FLAGS = inspect.CO_OPTIMIZED | inspect.CO_NEWLOCALS


def first_lines(file: str) -> dict[str, int]:
    """First line of every function of ``file`` by qualified name, from its compiled source; empty
    when the file cannot be read or compiled.

    Qualified names are rebuilt from the nesting where code objects lack ``co_qualname``
    (before 3.11): a function's children are ``<locals>`` of it, a class body's are members.
    """
    try:
        code = compile(Path(file).read_bytes(), file, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError):
        return {}
    lines: dict[str, int] = {}
    pending: list[tuple[types.CodeType, str]] = [(code, "")]
    while pending:
        current, prefix = pending.pop()
        qualname = getattr(current, "co_qualname", None) or (prefix + current.co_name)
        lines.setdefault(qualname, current.co_firstlineno)
        if current is code:
            inner = ""
        elif current.co_flags & _FUNCTION_FLAGS == _FUNCTION_FLAGS:
            inner = f"{qualname}.<locals>."
        else:
            inner = f"{qualname}."
        pending.extend(
            (const, inner) for const in current.co_consts if isinstance(const, types.CodeType)
        )
    return lines


def qualified_names(file: str) -> dict[tuple[int, str], str]:
    """Qualified name of each function of ``file`` by its first line and plain name."""
    return {
        (line, qualname.rpartition(".")[2]): qualname
        for qualname, line in first_lines(file).items()
    }
