"""The dashboard's HTML pages, rendered on the server from the summary.

Every string that came from a request or from code (endpoint names, function names, file names,
host names) goes through :func:`html.escape`; numbers are formatted here. The pages hold no inline
script or style (the CSP forbids both): behaviour lives in ``static/*.js``, looks in
``static/dashboard.css``, and bars are SVG attributes.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from wsgiprof.export import EXPORTERS
from wsgiprof.headline import headline

_e = html.escape

NA = "\u2013"
"""Shown for a value that cannot be computed (an en dash)."""

VERDICT_LABELS = {"cpu-bound": "CPU-bound", "mixed": "mixed", "waiting": "waiting"}


def _attr(value: object) -> str:
    return _e(str(value), quote=True)


def format_time(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def format_ms(value: object) -> str:
    if not isinstance(value, (int, float)):
        return NA
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_percent(value: object, digits: int = 0) -> str:
    if not isinstance(value, (int, float)):
        return NA
    return f"{value:.{digits}f}%"


def format_bytes(value: object) -> str:
    if not isinstance(value, (int, float)):
        return NA
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _sort_value(value: object) -> str:
    """A ``data-sort`` attribute for numeric cells (empty sorts last)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f' data-sort="{value!r}"'
    return ' data-sort=""'


def _short(path: str) -> str:
    if path.startswith("<"):
        return path
    return "/".join(path.replace("\\", "/").rsplit("/", 2)[-2:])


def function_label(function: dict[str, Any]) -> str:
    """``name (file:line)`` of a summary function, escaped."""
    name = str(function.get("name", "?"))
    file = str(function.get("file", ""))
    if not file or file.startswith("<"):
        return _e(name)
    return f'{_e(name)} <span class="where">({_e(file)}:{int(function.get("line", 0))})</span>'


def page(title: str, body: str, base: str, *, scripts: Iterable[str] = ("dashboard.js",)) -> str:
    """A full HTML document with the shared header; ``base`` is the route prefix URL path."""
    script_tags = "".join(
        f'<script src="{_attr(base)}/static/{_attr(name)}" defer></script>\n' for name in scripts
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n"
        '<link rel="icon" href="data:,">\n'
        f'<link rel="stylesheet" href="{_attr(base)}/static/dashboard.css">\n'
        f"{script_tags}</head>\n"
        f'<body data-base="{_attr(base)}">\n'
        '<header class="topbar">\n'
        f'<a class="brand" href="{_attr(base)}/">wsgiprof</a>\n'
        '<nav aria-label="Dashboard">'
        f'<a href="{_attr(base)}/">Endpoints</a>'
        f'<a href="{_attr(base)}/endpoints/all">Flamegraph of all endpoints</a>'
        f'<a href="{_attr(base)}/api/summary">Summary JSON</a>'
        "</nav>\n"
        '<div class="reset"><button type="button" id="reset-window" class="button">'
        "Reset window</button>"
        '<span id="reset-status" class="muted" role="status" aria-live="polite"></span></div>\n'
        "</header>\n"
        f'<main id="main">\n{body}</main>\n</body>\n</html>\n'
    )


def _window_line(summary: dict[str, Any]) -> str:
    window = summary["window"]
    start, end = window.get("start"), window.get("end")
    duration = (
        format_duration(end - start)
        if isinstance(start, (int, float)) and isinstance(end, (int, float))
        else "?"
    )
    totals = summary["totals"]
    rate = summary.get("sample_rate")
    rate_text = format_percent(rate * 100, 1 if rate < 0.1 else 0) if rate is not None else "?"
    return (
        '<p class="window">'
        f"Window started <time>{_e(format_time(start))}</time>, {_e(duration)} ago · "
        f"engine <strong>{_e(str(summary.get('engine')))}</strong> · "
        f"sample rate <strong>{_e(rate_text)}</strong> · "
        f"{int(totals['requests']):,} requests seen, {int(totals['sampled']):,} profiled"
        "</p>\n"
    )


def _bar(share: float) -> str:
    width = max(0.0, min(100.0, share * 100))
    return (
        '<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect class="bar-track" width="100" height="10"></rect>'
        f'<rect class="bar-fill" width="{width:.2f}" height="10"></rect></svg>'
    )


def _verdict(value: object) -> str:
    if not isinstance(value, str) or value not in VERDICT_LABELS:
        return '<span class="muted">&ndash;</span>'
    return f'<span class="verdict verdict-{value}">{VERDICT_LABELS[value]}</span>'


def _endpoint_rows(summary: dict[str, Any], base: str) -> str:
    rows = []
    for entry in summary["endpoints"]:
        href = f"{base}/endpoints/{quote(entry['id'], safe='')}"
        share = float(entry["cpu_share"] or 0.0)
        functions = entry.get("top_functions") or []
        cpu = float(entry.get("cpu_seconds") or 0.0)
        if functions and cpu > 0:
            top = functions[0]
            part = float(top.get("self_cpu_seconds") or 0.0) / cpu * 100
            top_html = (
                f'{function_label(top)} <span class="muted">{_e(format_percent(part))} self</span>'
            )
        else:
            top_html = '<span class="muted">&ndash;</span>'
        ratio = entry.get("cpu_wall_ratio")
        rows.append(
            "<tr>"
            f'<th scope="row" data-sort="{_attr(entry["name"])}">'
            f'<a href="{_attr(href)}">{_e(entry["name"])}</a></th>'
            f'<td class="num"{_sort_value(entry["requests"])}>{int(entry["requests"]):,}</td>'
            f'<td class="num"{_sort_value(entry["sampled"])}>{int(entry["sampled"]):,}</td>'
            f'<td class="share"{_sort_value(share)}>{_bar(share)}'
            f'<span class="num">{_e(format_percent(share * 100, 1))}</span></td>'
            f'<td class="num"{_sort_value(entry["mean_cpu_ms"])}>'
            f"{_e(format_ms(entry['mean_cpu_ms']))}</td>"
            f'<td class="num"{_sort_value(entry["mean_wall_ms"])}>'
            f"{_e(format_ms(entry['mean_wall_ms']))}</td>"
            f'<td class="num"{_sort_value(entry["p50_wall_ms"])}>'
            f"{_e(format_ms(entry['p50_wall_ms']))}</td>"
            f'<td class="num"{_sort_value(entry["p95_wall_ms"])}>'
            f"{_e(format_ms(entry['p95_wall_ms']))}</td>"
            f'<td class="num"{_sort_value(ratio)}>'
            f"{_e(f'{ratio:.2f}' if isinstance(ratio, (int, float)) else NA)} "
            f"{_verdict(entry.get('verdict'))}</td>"
            f"<td>{top_html}</td>"
            "</tr>\n"
        )
    return "".join(rows)


_ENDPOINT_COLUMNS = (
    ("Endpoint", "text", "name"),
    ("Requests", "number", "seen in the window"),
    ("Sampled", "number", "profiled"),
    ("CPU share", "number", "of all sampled CPU"),
    ("CPU ms", "number", "mean per sampled request"),
    ("Wall ms", "number", "mean per sampled request"),
    ("p50 wall", "number", "ms"),
    ("p95 wall", "number", "ms"),
    ("CPU / wall", "number", "≥ 0.7 CPU-bound, < 0.3 waiting"),
    ("Hottest function", "none", "by self CPU"),
)


def _sortable_head(columns: Iterable[tuple[str, str, str]], sorted_index: int | None) -> str:
    cells = []
    for index, (label, kind, hint) in enumerate(columns):
        title = f' title="{_attr(hint)}"' if hint else ""
        if kind == "none":
            cells.append(f'<th scope="col"{title}>{_e(label)}</th>')
            continue
        sort = ' aria-sort="descending"' if index == sorted_index else ""
        cells.append(
            f'<th scope="col" data-type="{kind}"{sort}{title}>'
            f'<button type="button" class="sort">{_e(label)}</button></th>'
        )
    return "<thead><tr>" + "".join(cells) + "</tr></thead>\n"


def _processes(summary: dict[str, Any]) -> str:
    processes = summary.get("processes") or []
    rows = "".join(
        "<tr>"
        f'<th scope="row">{int(p["pid"])}</th>'
        f"<td>{_e(str(p.get('host', '')))}</td>"
        f'<td class="num">{_e(format_percent(p.get("cpu_percent"), 1))}</td>'
        f'<td class="num">{_e(format_bytes(p.get("rss_bytes")))}</td>'
        f'<td class="num">{_e(str(p["threads"]) if p.get("threads") is not None else NA)}</td>'
        f"<td>{_e(format_time(p.get('last_seen')))}</td>"
        "</tr>\n"
        for p in processes
    )
    table = (
        '<table class="data">\n<caption>Worker processes (CPU: percent of one core over the '
        "window)</caption>\n<thead><tr>"
        '<th scope="col">pid</th><th scope="col">Host</th><th scope="col">CPU</th>'
        '<th scope="col">RSS</th><th scope="col">Threads</th><th scope="col">Last flush</th>'
        f"</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n"
        if rows
        else "<p>No worker has reported yet.</p>\n"
    )
    host = summary.get("host")
    host_html = ""
    if isinstance(host, dict):
        load = host.get("load") or []
        load_text = " / ".join(f"{float(v):.2f}" for v in load) if load else NA
        host_html = (
            '<dl class="host">'
            f"<div><dt>Host CPU</dt><dd>{_e(format_percent(host.get('cpu_percent'), 0))}</dd></div>"
            f"<div><dt>Load (1, 5, 15 min)</dt><dd>{_e(load_text)}</dd></div>"
            f"<div><dt>Cores</dt><dd>{_e(str(host.get('cores', NA)))}</dd></div>"
            f"<div><dt>Memory used</dt>"
            f"<dd>{_e(format_percent(host.get('memory_percent'), 0))}</dd></div>"
            "</dl>\n"
        )
    return (
        '<section aria-labelledby="processes-title">\n'
        '<h2 id="processes-title">Processes and host</h2>\n'
        f"{host_html}{table}</section>\n"
    )


def download_table(href: str, caption: str) -> str:
    """Links for every export format, CPU and wall, with how to open each file."""
    rows = "".join(
        "<tr>"
        f'<th scope="row"><code>.{_e(fmt)}</code></th>'
        f'<td><a href="{_attr(href)}/profile.{_attr(fmt)}?weight=cpu" download>CPU</a></td>'
        f'<td><a href="{_attr(href)}/profile.{_attr(fmt)}?weight=wall" download>wall</a></td>'
        f"<td><code>{_e(exporter.description)}</code></td>"
        "</tr>\n"
        for fmt, exporter in EXPORTERS.items()
    )
    return (
        f'<table class="data downloads">\n<caption>{_e(caption)}</caption>\n'
        '<thead><tr><th scope="col">Format</th><th scope="col" colspan="2">Weighted by</th>'
        '<th scope="col">Open with</th></tr></thead>\n'
        f"<tbody>\n{rows}</tbody>\n</table>\n"
    )


def render_overview(summary: dict[str, Any], base: str) -> str:
    """The overview: headline, window, endpoint table, processes and host, downloads."""
    line = headline(summary)
    rows = _endpoint_rows(summary, base)
    table = (
        '<table class="data sortable" id="endpoints">\n'
        "<caption>Endpoints by share of sampled CPU (click a column to sort)</caption>\n"
        + _sortable_head(_ENDPOINT_COLUMNS, 3)
        + f"<tbody>\n{rows}</tbody>\n</table>\n"
        if rows
        else '<p class="empty">No requests profiled yet.</p>\n'
    )
    body = (
        f'<section class="headline headline-{_attr(line.kind)}" aria-label="Headline">'
        f'<p id="headline">{_e(line.text)}</p></section>\n'
        f"{_window_line(summary)}"
        f"{table}"
        f"{_processes(summary)}"
        '<section aria-labelledby="downloads-title">\n'
        '<h2 id="downloads-title">Downloads: all endpoints</h2>\n'
        f"{download_table(f'{base}/api', 'Every endpoint in one file, one root per endpoint')}"
        "</section>\n"
    )
    return page("wsgiprof: endpoints", body, base)


def _facts(entry: dict[str, Any]) -> str:
    facts = [
        ("Requests", f"{int(entry['requests']):,}"),
        ("Sampled", f"{int(entry['sampled']):,}"),
        ("CPU share", format_percent(float(entry["cpu_share"] or 0) * 100, 1)),
        ("Mean CPU", format_ms(entry["mean_cpu_ms"]) + " ms"),
        ("Mean wall", format_ms(entry["mean_wall_ms"]) + " ms"),
        (
            "p50 / p95 wall",
            f"{format_ms(entry['p50_wall_ms'])} / {format_ms(entry['p95_wall_ms'])} ms",
        ),
    ]
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    ratio = entry.get("cpu_wall_ratio")
    ratio_text = f"{ratio:.2f}" if isinstance(ratio, (int, float)) else NA
    items += (
        f"<div><dt>CPU / wall</dt><dd>{_e(ratio_text)} {_verdict(entry.get('verdict'))}</dd></div>"
    )
    if entry.get("errors"):
        items += f"<div><dt>Errors</dt><dd>{int(entry['errors']):,}</dd></div>"
    if entry.get("overflow_samples"):
        items += (
            "<div><dt>Samples past the stack cap</dt>"
            f"<dd>{int(entry['overflow_samples']):,}</dd></div>"
        )
    return f'<dl class="facts">{items}</dl>\n'


def _flame_section(src: str) -> str:
    return (
        '<section class="flame-section" aria-labelledby="flame-title">\n'
        '<h2 id="flame-title">Flamegraph</h2>\n'
        '<div class="toolbar">\n'
        '<fieldset class="mode"><legend>Weight</legend>'
        '<label><input type="radio" name="mode" value="cpu" checked> CPU</label>'
        '<label><input type="radio" name="mode" value="wall"> Wall</label></fieldset>\n'
        '<label class="search">Search <input type="search" id="flame-search" '
        'placeholder="function or file" autocomplete="off"></label>\n'
        '<span id="flame-match" class="match" role="status" aria-live="polite"></span>\n'
        '<button type="button" class="button" id="flame-reset" disabled>Reset zoom</button>\n'
        "</div>\n"
        '<ul class="legend" aria-label="Colours">'
        '<li><span class="swatch kind-app"></span>application</li>'
        '<li><span class="swatch kind-lib"></span>installed package</li>'
        '<li><span class="swatch kind-std"></span>standard library</li>'
        '<li><span class="swatch kind-builtin"></span>C function</li>'
        '<li><span class="swatch kind-off"></span>off-CPU (waiting)</li>'
        '<li><span class="swatch kind-synthetic"></span>added by wsgiprof</li>'
        "</ul>\n"
        f'<div id="flame" class="flame" data-src="{_attr(src)}" tabindex="0" '
        'aria-label="Flamegraph: click a frame to zoom into it, Escape to reset">'
        '<p class="muted" id="flame-loading">Loading the flamegraph…</p></div>\n'
        '<div id="flame-tip" class="tip" role="tooltip" hidden></div>\n'
        '<p id="flame-note" class="muted"></p>\n'
        "</section>\n"
        '<section aria-labelledby="functions-title">\n'
        '<h2 id="functions-title">Functions</h2>\n'
        '<table class="data sortable" id="functions">\n'
        "<caption>Functions by self time (weight follows the mode above; "
        "total counts each stack once)</caption>\n"
        + _sortable_head(
            (
                ("Function", "text", ""),
                ("File", "text", ""),
                ("Self", "number", "time with the function as leaf"),
                ("Self %", "number", ""),
                ("Total", "number", "time with the function anywhere on the stack"),
                ("Total %", "number", ""),
            ),
            2,
        )
        + "<tbody></tbody>\n</table>\n</section>\n"
    )


def render_endpoint(entry: dict[str, Any], base: str) -> str:
    """One endpoint: facts, flamegraph, functions, downloads."""
    ident = quote(entry["id"], safe="")
    api = f"{base}/api/endpoints/{ident}"
    body = (
        f"<h1>{_e(entry['name'])}</h1>\n"
        f"{_facts(entry)}"
        f"{_flame_section(f'{api}/flame.json')}"
        '<section aria-labelledby="downloads-title">\n'
        '<h2 id="downloads-title">Downloads</h2>\n'
        f"{download_table(api, 'This endpoint as a file for other viewers')}"
        "</section>\n"
    )
    return page(f"wsgiprof: {entry['name']}", body, base, scripts=("dashboard.js", "flame.js"))


def render_all(summary: dict[str, Any], base: str) -> str:
    """Every endpoint in one flamegraph, one root frame per endpoint."""
    totals = summary["totals"]
    body = (
        "<h1>All endpoints</h1>\n"
        f"{_window_line(summary)}"
        f'<p class="muted">{len(summary["endpoints"])} endpoints, '
        f"{float(totals['cpu_seconds'] or 0):.3f} CPU s and "
        f"{float(totals['wall_seconds'] or 0):.3f} wall s sampled.</p>\n"
        f"{_flame_section(f'{base}/api/flame.json')}"
        '<section aria-labelledby="downloads-title">\n'
        '<h2 id="downloads-title">Downloads</h2>\n'
        f"{download_table(f'{base}/api', 'Every endpoint in one file, one root per endpoint')}"
        "</section>\n"
    )
    return page("wsgiprof: all endpoints", body, base, scripts=("dashboard.js", "flame.js"))
