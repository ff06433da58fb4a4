"""The dashboard's HTML pages, rendered on the server from the summary.

Every string that came from a request or from code (endpoint names, function names, file names,
host names) goes through :func:`html.escape`; numbers are formatted here. The pages hold no inline
script or style (the CSP forbids both): behaviour lives in ``static/*.js``, looks in
``static/dashboard.css``, and bars are SVG attributes.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from wsgiprof.export import EXPORTERS
from wsgiprof.headline import headline
from wsgiprof.stores.base import RunInfo

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


def page(
    title: str,
    body: str,
    base: str,
    *,
    scripts: Iterable[str] = ("dashboard.js",),
    assets: str | None = None,
) -> str:
    """A full HTML document with the shared header; ``base`` is the route prefix URL path.

    ``assets`` set (a relative folder) makes an offline document instead: scripts and styles
    come from that folder next to the file, and the header has no links to the live route.
    """
    if assets is not None:
        script_tags = "".join(
            f'<script src="{_attr(assets)}/{_attr(name)}" defer></script>\n' for name in scripts
        )
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n"
            f'<link rel="stylesheet" href="{_attr(assets)}/dashboard.css">\n'
            f"{script_tags}</head>\n"
            '<body data-base="">\n'
            '<header class="topbar"><span class="brand">wsgiprof</span>'
            f'<span class="muted">{_e(title)}</span></header>\n'
            f'<main id="main">\n{body}</main>\n</body>\n</html>\n'
        )
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
        f'<a href="{_attr(base)}/runs">Runs</a>'
        f'<a href="{_attr(base)}/api/summary">Summary JSON</a>'
        "</nav>\n"
        '<div class="reset"><button type="button" id="reset-window" class="button">'
        "Reset window</button>"
        '<span id="reset-status" class="muted" role="status" aria-live="polite"></span></div>\n'
        "</header>\n"
        f'<main id="main">\n{body}</main>\n</body>\n</html>\n'
    )


def _window_line(summary: dict[str, Any], *, saved: bool = False) -> str:
    window = summary["window"]
    start, end = window.get("start"), window.get("end")
    duration = (
        format_duration(end - start)
        if isinstance(start, (int, float)) and isinstance(end, (int, float))
        else "?"
    )
    when = f"lasted {_e(duration)}" if saved else f"{_e(duration)} ago"
    totals = summary["totals"]
    rate = summary.get("sample_rate")
    rate_text = format_percent(rate * 100, 1 if rate < 0.1 else 0) if rate is not None else "?"
    return (
        '<p class="window">'
        f"Window started <time>{_e(format_time(start))}</time>, {when} · "
        f'engine <strong title="{_e(str(summary.get("engine_reason", "")))}">'
        f"{_e(str(summary.get('engine')))}</strong> · "
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


def _endpoint_rows(summary: dict[str, Any], href_for: Callable[[dict[str, Any]], str]) -> str:
    rows = []
    for entry in summary["endpoints"]:
        href = href_for(entry)
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
            + (f'<a href="{_attr(href)}">{_e(entry["name"])}</a>' if href else _e(entry["name"]))
            + "</th>"
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


def _query(run: RunInfo | None, **more: str) -> str:
    """``?run=<id>&...`` for the links of a page showing a saved run (empty for the window)."""
    values = {**({"run": run.id} if run is not None else {}), **more}
    return "?" + urlencode(values) if values else ""


def download_table(href: str, caption: str, run: RunInfo | None = None) -> str:
    """Links for every export format, CPU and wall, with how to open each file."""
    extra = f"&run={quote(run.id, safe='')}" if run is not None else ""
    rows = "".join(
        "<tr>"
        f'<th scope="row"><code>.{_e(fmt)}</code></th>'
        f'<td><a href="{_attr(href)}/profile.{_attr(fmt)}?weight=cpu{_attr(extra)}" download>'
        "CPU</a></td>"
        f'<td><a href="{_attr(href)}/profile.{_attr(fmt)}?weight=wall{_attr(extra)}" download>'
        "wall</a></td>"
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


def _run_banner(run: RunInfo | None, base: str) -> str:
    if run is None:
        return ""
    return (
        f'<p class="run-banner" id="run-banner">Saved run <strong>{_e(run.label)}</strong> '
        f"(id {_e(run.id)}), saved <time>{_e(format_time(run.saved_at))}</time>. "
        f'<a href="{_attr(base)}/">Current window</a> · <a href="{_attr(base)}/runs">All runs</a>'
        "</p>\n"
    )


def _endpoint_table(summary: dict[str, Any], href_for: Callable[[dict[str, Any]], str]) -> str:
    rows = _endpoint_rows(summary, href_for)
    return (
        '<table class="data sortable" id="endpoints">\n'
        "<caption>Endpoints by share of sampled CPU (click a column to sort)</caption>\n"
        + _sortable_head(_ENDPOINT_COLUMNS, 3)
        + f"<tbody>\n{rows}</tbody>\n</table>\n"
        if rows
        else '<p class="empty">No requests profiled yet.</p>\n'
    )


def render_overview(summary: dict[str, Any], base: str, run: RunInfo | None = None) -> str:
    """The overview: headline, window, endpoint table, processes and host, downloads; of the
    current window, or of a saved ``run``."""
    line = headline(summary)
    query = _query(run)
    table = _endpoint_table(
        summary, lambda entry: f"{base}/endpoints/{quote(entry['id'], safe='')}{query}"
    )
    csv = (
        ""
        if run is not None
        else f'<p><a href="{_attr(base)}/api/requests.csv" download>requests.csv</a>: one row '
        "per profiled request of the window (time, endpoint, status, CPU and wall ms, worker), "
        "to join with the raw results of the load tester.</p>\n"
    )
    body = (
        f"{_run_banner(run, base)}"
        f'<section class="headline headline-{_attr(line.kind)}" aria-label="Headline">'
        f'<p id="headline">{_e(line.text)}</p></section>\n'
        f"{_window_line(summary, saved=run is not None)}"
        f"{table}"
        f"{_processes(summary)}"
        '<section aria-labelledby="downloads-title">\n'
        '<h2 id="downloads-title">Downloads: all endpoints</h2>\n'
        f"{download_table(f'{base}/api', 'Every endpoint in one file, one root per endpoint', run)}"
        f"{csv}"
        "</section>\n"
    )
    title = f"wsgiprof: run {run.label}" if run is not None else "wsgiprof: endpoints"
    return page(title, body, base)


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


def render_endpoint(entry: dict[str, Any], base: str, run: RunInfo | None = None) -> str:
    """One endpoint: facts, flamegraph, functions, downloads (of the window or a saved run)."""
    ident = quote(entry["id"], safe="")
    api = f"{base}/api/endpoints/{ident}"
    body = (
        f"{_run_banner(run, base)}"
        f"<h1>{_e(entry['name'])}</h1>\n"
        f"{_facts(entry)}"
        f"{_flame_section(f'{api}/flame.json{_query(run)}')}"
        '<section aria-labelledby="downloads-title">\n'
        '<h2 id="downloads-title">Downloads</h2>\n'
        f"{download_table(api, 'This endpoint as a file for other viewers', run)}"
        "</section>\n"
    )
    return page(f"wsgiprof: {entry['name']}", body, base, scripts=("dashboard.js", "flame.js"))


def render_all(summary: dict[str, Any], base: str, run: RunInfo | None = None) -> str:
    """Every endpoint in one flamegraph, one root frame per endpoint."""
    totals = summary["totals"]
    body = (
        f"{_run_banner(run, base)}"
        "<h1>All endpoints</h1>\n"
        f"{_window_line(summary, saved=run is not None)}"
        f'<p class="muted">{len(summary["endpoints"])} endpoints, '
        f"{float(totals['cpu_seconds'] or 0):.3f} CPU s and "
        f"{float(totals['wall_seconds'] or 0):.3f} wall s sampled.</p>\n"
        f"{_flame_section(f'{base}/api/flame.json{_query(run)}')}"
        '<section aria-labelledby="downloads-title">\n'
        '<h2 id="downloads-title">Downloads</h2>\n'
        f"{download_table(f'{base}/api', 'Every endpoint in one file, one root per endpoint', run)}"
        "</section>\n"
    )
    return page("wsgiprof: all endpoints", body, base, scripts=("dashboard.js", "flame.js"))


# -- saved runs and comparisons ----------------------------------------------------------------


def render_runs(runs: Sequence[RunInfo], base: str) -> str:
    """The saved runs: open, compare, delete; and a form that saves the current window."""
    rows = "".join(
        "<tr>"
        f'<th scope="row" data-sort="{_attr(run.label)}">'
        f'<a href="{_attr(base)}/runs/{_attr(quote(run.id, safe=""))}">{_e(run.label)}</a></th>'
        f'<td class="num"{_sort_value(int(run.id) if run.id.isdigit() else None)}>'
        f"{_e(run.id)}</td>"
        f"<td{_sort_value(run.window_start)}>{_e(format_time(run.window_start))}</td>"
        f'<td class="num"{_sort_value(run.window_end - run.window_start)}>'
        f"{_e(format_duration(run.window_end - run.window_start))}</td>"
        f'<td class="num"{_sort_value(run.requests)}>{run.requests:,}</td>'
        f'<td class="num"{_sort_value(run.sampled)}>{run.sampled:,}</td>'
        f'<td class="num"{_sort_value(run.cpu_seconds)}>{run.cpu_seconds:.2f}</td>'
        f'<td><button type="button" class="button delete-run" data-id="{_attr(run.id)}" '
        f'data-label="{_attr(run.label)}">Delete</button></td>'
        "</tr>\n"
        for run in runs
    )
    table = (
        '<table class="data sortable" id="runs">\n<caption>Saved runs, oldest first</caption>\n'
        + _sortable_head(
            (
                ("Label", "text", ""),
                ("Id", "number", ""),
                ("Started", "number", ""),
                ("Length", "number", ""),
                ("Requests", "number", ""),
                ("Sampled", "number", ""),
                ("CPU s", "number", "sampled CPU seconds"),
                ("", "none", ""),
            ),
            None,
        )
        + f"<tbody>\n{rows}</tbody>\n</table>\n"
        if rows
        else '<p class="empty" id="no-runs">No saved runs yet.</p>\n'
    )
    options = '<option value="current">current window</option>' + "".join(
        f'<option value="{_attr(run.id)}">{_e(run.label)} (id {_e(run.id)})</option>'
        for run in runs
    )
    compare = (
        f'<form class="compare" method="get" action="{_attr(base)}/diff">'
        f'<label>Before (A) <select name="a" id="diff-a">{options}</select></label> '
        f'<label>After (B) <select name="b" id="diff-b">{options}</select></label> '
        '<button type="submit" class="button" id="diff-go">Compare</button></form>\n'
    )
    body = (
        "<h1>Runs</h1>\n"
        '<p class="muted">A run is a window saved under a label: run the load, save it as '
        "<em>baseline</em>, change something, run the load again, save it, compare.</p>\n"
        '<form class="save-run" id="save-run">'
        '<label>Save the current window as <input type="text" id="run-label" name="label" '
        'maxlength="100" required placeholder="baseline"></label> '
        '<button type="submit" class="button">Save run</button> '
        '<span id="run-status" class="muted" role="status" aria-live="polite"></span></form>\n'
        f"{table}" + ("<h2>Compare two runs</h2>\n" + compare if runs else "")
    )
    return page("wsgiprof: runs", body, base)


def format_change(value: object, digits: int = 0) -> str:
    """A relative change as ``+12%`` / ``-40%``, or an en dash."""
    if not isinstance(value, (int, float)):
        return NA
    return f"{value * 100:+.{digits}f}%"


def _change_class(value: object) -> str:
    if not isinstance(value, (int, float)) or abs(value) < 0.05:
        return "change"
    return "change grew" if value > 0 else "change shrank"


def diff_tables(diff: dict[str, Any], href_for: Callable[[dict[str, Any]], str] | None) -> str:
    """The endpoint and function tables of a comparison (``wsgiprof.diff.Diff.to_dict``)."""
    rows = []
    for entry in diff["endpoints"]:
        cpu_a, cpu_b = entry["cpu_ms_per_request"]
        share_a, share_b = entry["share"]
        change = entry["cpu_change"]
        name = _e(entry["name"])
        link = href_for(entry) if href_for else ""
        rows.append(
            "<tr>"
            f'<th scope="row" data-sort="{_attr(entry["name"])}">'
            + (f'<a href="{_attr(link)}">{name}</a>' if link else name)
            + "</th>"
            f'<td class="num"{_sort_value(cpu_a)}>{_e(format_ms(cpu_a))}</td>'
            f'<td class="num"{_sort_value(cpu_b)}>{_e(format_ms(cpu_b))}</td>'
            f'<td class="num {_change_class(change)}"{_sort_value(change)}>'
            f"{_e(format_change(change))}</td>"
            f'<td class="num"{_sort_value(share_a)}>{_e(format_percent(share_a * 100, 1))}</td>'
            f'<td class="num"{_sort_value(share_b)}>{_e(format_percent(share_b * 100, 1))}</td>'
            f'<td class="num">{entry["share_change"] * 100:+.1f} pts</td>'
            f'<td class="num">{int(entry["sampled"][0]):,} / {int(entry["sampled"][1]):,}</td>'
            "</tr>\n"
        )
    endpoints = (
        '<table class="data sortable" id="diff-endpoints">\n'
        "<caption>Endpoints: CPU per sampled request and share of all sampled CPU</caption>\n"
        + _sortable_head(
            (
                ("Endpoint", "text", ""),
                ("CPU ms A", "number", "per sampled request, before"),
                ("CPU ms B", "number", "per sampled request, after"),
                ("Change", "number", "of CPU per request"),
                ("Share A", "number", ""),
                ("Share B", "number", ""),
                ("Share change", "none", "percentage points"),
                ("Sampled A / B", "none", ""),
            ),
            None,
        )
        + "<tbody>\n"
        + "".join(rows)
        + "</tbody>\n</table>\n"
    )
    function_rows = "".join(
        "<tr>"
        f'<th scope="row">{function_label(f)}</th>'
        f"<td>{_e(f['endpoint'])}</td>"
        f'<td class="num">{_e(format_ms(f["self_ms_per_request"][0]))}</td>'
        f'<td class="num">{_e(format_ms(f["self_ms_per_request"][1]))}</td>'
        f'<td class="num {_change_class(f["self_change"])}">'
        f"{_e(format_change(f['self_change']))}</td>"
        f'<td class="num">{_e(format_ms(f["total_ms_per_request"][0]))}</td>'
        f'<td class="num">{_e(format_ms(f["total_ms_per_request"][1]))}</td>'
        f'<td class="num {_change_class(f["total_change"])}">'
        f"{_e(format_change(f['total_change']))}</td>"
        "</tr>\n"
        for f in diff["functions"][:60]
    )
    functions = (
        '<table class="data" id="diff-functions">\n'
        "<caption>Functions with the largest change in self CPU per request (ms)</caption>\n"
        "<thead><tr>"
        + "".join(
            f'<th scope="col">{_e(label)}</th>'
            for label in (
                "Function",
                "Endpoint",
                "Self A",
                "Self B",
                "Self change",
                "Total A",
                "Total B",
                "Total change",
            )
        )
        + f"</tr></thead>\n<tbody>\n{function_rows}</tbody>\n</table>\n"
    )
    return endpoints + functions


def _diff_flame_section(src: str, a: str, b: str) -> str:
    return (
        '<section class="flame-section" aria-labelledby="flame-title">\n'
        '<h2 id="flame-title">Differential flamegraph</h2>\n'
        '<div class="toolbar">\n'
        '<fieldset class="mode"><legend>Widths</legend>'
        f'<label><input type="radio" name="mode" value="b" checked> After ({_e(b)})</label>'
        f'<label><input type="radio" name="mode" value="a"> Before ({_e(a)})</label></fieldset>\n'
        '<label class="search">Search <input type="search" id="flame-search" '
        'placeholder="function or file" autocomplete="off"></label>\n'
        '<span id="flame-match" class="match" role="status" aria-live="polite"></span>\n'
        '<button type="button" class="button" id="flame-reset" disabled>Reset zoom</button>\n'
        "</div>\n"
        '<ul class="legend" aria-label="Colours">'
        '<li><span class="swatch diff-grew"></span>more CPU per request after</li>'
        '<li><span class="swatch diff-same"></span>about the same (within 5%)</li>'
        '<li><span class="swatch diff-shrank"></span>less CPU per request after</li>'
        "</ul>\n"
        f'<div id="flame" class="flame" data-src="{_attr(src)}" tabindex="0" '
        'aria-label="Differential flamegraph: click a frame to zoom into it, Escape to reset">'
        '<p class="muted" id="flame-loading">Loading the flamegraph…</p></div>\n'
        '<div id="flame-tip" class="tip" role="tooltip" hidden></div>\n'
        '<p id="flame-note" class="muted"></p>\n'
        "</section>\n"
    )


def _diff_heading(diff: dict[str, Any], endpoint: str | None) -> str:
    scope = f" · {_e(endpoint)}" if endpoint else ""
    return (
        f'<h1>Compare <span class="run-a">{_e(diff["a"])}</span> → '
        f'<span class="run-b">{_e(diff["b"])}</span>{scope}</h1>\n'
        '<p class="muted">All times are CPU per sampled request, so runs of different lengths '
        "compare. Red: more CPU per request after; blue: less.</p>\n"
    )


def render_diff(
    diff: dict[str, Any], base: str, a: str, b: str, endpoint: dict[str, str] | None = None
) -> str:
    """The comparison of runs ``a`` and ``b`` (references as given in the URL): tables and the
    differential flamegraph of every endpoint, or of one (``endpoint``: its id and name)."""
    more = {"endpoint": endpoint["id"]} if endpoint else {}
    src = f"{base}/api/diff/flame.json?" + urlencode({"a": a, "b": b, **more})
    body = (
        _diff_heading(diff, endpoint["name"] if endpoint else None)
        + (
            f'<p><a href="{_attr(base)}/diff?{_attr(urlencode({"a": a, "b": b}))}">'
            "All endpoints</a></p>\n"
            if endpoint
            else ""
        )
        + diff_tables(
            diff,
            lambda entry: f"{base}/diff?" + urlencode({"a": a, "b": b, "endpoint": entry["id"]}),
        )
        + _diff_flame_section(src, diff["a"], diff["b"])
    )
    return page(
        f"wsgiprof: {diff['a']} → {diff['b']}", body, base, scripts=("dashboard.js", "flame.js")
    )


# -- offline reports (written by the CLI; open from disk, no server) ------------------------------


def render_report(summary: dict[str, Any], files: Sequence[str], assets: str) -> str:
    """The offline report of a pulled window: headline, endpoints, processes, the flamegraph of
    all endpoints (its data in ``<assets>/flame-data.js``) and links to the pulled files."""
    line = headline(summary)
    links = "".join(f'<li><a href="{_attr(quote(name))}">{_e(name)}</a></li>' for name in files)
    body = (
        f'<section class="headline headline-{_attr(line.kind)}" aria-label="Headline">'
        f'<p id="headline">{_e(line.text)}</p></section>\n'
        f"{_window_line(summary, saved=True)}"
        f"{_endpoint_table(summary, lambda entry: '')}"
        f"{_processes(summary)}"
        f"{_flame_section('')}"
        f'<section><h2>Files</h2><ul class="files">{links}</ul></section>\n'
    )
    return page(
        "wsgiprof report",
        body,
        "",
        scripts=("flame-data.js", "dashboard.js", "flame.js"),
        assets=assets,
    )


def render_diff_report(diff: dict[str, Any], assets: str) -> str:
    """The offline comparison report: tables and the differential flamegraph of every endpoint
    (its data in ``<assets>/flame-data.js``)."""
    body = _diff_heading(diff, None) + diff_tables(diff, None)
    body += _diff_flame_section("", diff["a"], diff["b"])
    return page(
        f"wsgiprof: {diff['a']} → {diff['b']}",
        body,
        "",
        scripts=("flame-data.js", "dashboard.js", "flame.js"),
        assets=assets,
    )
