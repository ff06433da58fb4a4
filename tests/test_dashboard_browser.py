"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright's Python package;
no browser is ever downloaded), against the example Flask app under a bounded load.

Skipped when Chromium or Playwright is missing, except under ``CI`` where that fails instead.
:func:`test_screenshots` always takes the README's pictures and checks them;
``WSGIPROF_SCREENSHOTS=1`` saves them as ``docs/overview.png`` and ``docs/flamegraph.png``.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask

from tests.servers import REPO_ROOT, ThreadedServer, load, unavailable
from wsgiprof import ProfilerMiddleware
from wsgiprof.config import Config
from wsgiprof.dashboard import Dashboard
from wsgiprof.endpoints import ENVIRON_KEY
from wsgiprof.model import EndpointProfile, Frame, Weight, endpoint_id
from wsgiprof.stores import MemoryStore
from wsgiprof.stores.base import ProcessInfo

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

pytestmark = [pytest.mark.browser, pytest.mark.allow_thread_leak]

CHROMIUM = os.environ.get("WSGIPROF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token-0123"
PREFIX = "/_wsgiprof"
EVIL_PATH = "/<img src=x onerror=alert(1)>"
EVIL_FUNCTION = "evil<&\"'>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        unavailable(f"chromium not found at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _hostile_handler(error: Exception) -> tuple[str, int]:
    total = 0
    for i in range(300_000):
        total += i * i % 7
    return f"not found ({total})", 404


# A function whose name holds markup, the way a profile of real code could: pyinstrument reads
# the name from the code object.
_hostile_handler.__code__ = _hostile_handler.__code__.replace(co_name=EVIL_FUNCTION)
if sys.version_info >= (3, 11):
    _hostile_handler.__code__ = _hostile_handler.__code__.replace(co_qualname=EVIL_FUNCTION)


def _raw_path_for_unmatched(environ: WSGIEnvironment) -> str:
    """Flask's route names, but unmatched requests by their raw path, so that a hostile path
    becomes an endpoint name on the page."""
    method = environ.get("REQUEST_METHOD", "GET")
    template = environ.get(ENVIRON_KEY)
    return f"{method} {template if template else environ.get('PATH_INFO', '')}"


def fresh_example_app() -> WSGIApplication:
    """The example app's views on a new Flask app, profiled with an explicit config."""
    from examples.flask_app import app as example

    fresh = Flask("wsgiprof_browser_example")
    for rule in example.app.url_map.iter_rules():
        if rule.endpoint != "static":
            fresh.add_url_rule(
                rule.rule,
                rule.endpoint,
                example.app.view_functions[rule.endpoint],
                methods=rule.methods,
            )
    fresh.register_error_handler(404, _hostile_handler)
    config = Config(enabled=True, sample_rate=1.0, token=TOKEN, store="memory")
    return ProfilerMiddleware(fresh.wsgi_app, config=config, endpoint_key=_raw_path_for_unmatched)


@dataclass
class Site:
    url: str
    server: ThreadedServer

    def page_url(self, path: str = "/") -> str:
        return f"{self.url}{PREFIX}{path}"


@pytest.fixture
def site(threaded_server: Callable[[WSGIApplication], ThreadedServer]) -> Site:
    server = threaded_server(fresh_example_app())
    load(f"{server.url}/report", 40, 4)
    load(f"{server.url}/inventory", 6, 2)
    load(f"{server.url}/users/7", 20, 4)
    load(f"{server.url}/health", 20, 4)
    load(f"{server.url}/{'%3Cimg%20src=x%20onerror=alert(1)%3E'}", 3, 1)
    return Site(server.url, server)


class Watch:
    """Collects console errors, page errors and dialogs of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(
        http_credentials={"username": "me", "password": TOKEN},
        viewport={"width": 1280, "height": 900},
    )
    try:
        yield ctx
    finally:
        ctx.close()


_SORT_KEYS = "cells => cells.map(cell => cell.getAttribute('data-sort'))"


def _frame_width(page: Any, label_prefix: str) -> float:
    rect = page.locator(f'#flame g.frame[aria-label^="{label_prefix}"] rect').first
    return float(rect.get_attribute("width"))


def _svg_width(page: Any) -> float:
    return float(page.locator("#flame svg").get_attribute("width"))


def test_login_required(browser: Any, site: Site) -> None:
    anonymous = browser.new_context()
    try:
        response = anonymous.request.get(site.page_url("/"))
        assert response.status == 401
        assert response.headers["www-authenticate"].startswith("Basic")
    finally:
        anonymous.close()
    wrong = browser.new_context(http_credentials={"username": "me", "password": "wrong-token!"})
    try:
        # A page navigation would end in net::ERR_INVALID_AUTH_CREDENTIALS; the context's
        # request API shows the answer itself.
        assert wrong.request.get(site.page_url("/")).status == 401
    finally:
        wrong.close()


def test_overview(context: Any, site: Site) -> None:
    page = context.new_page()
    watch = Watch(page)
    response = page.goto(site.page_url("/"))
    assert response is not None
    assert response.status == 200
    names = page.locator("#endpoints tbody th a").all_text_contents()
    assert names[0] == "GET /report"
    for name in ("GET /inventory", "GET /users/<int:user_id>", "GET /health", "GET " + EVIL_PATH):
        assert name in names
    assert "GET /report used" in page.locator("#headline").text_content()
    # Sorting by a header reorders the rows; a second click reverses the order.
    wall_cells = "#endpoints tbody tr td:nth-child(6)"
    page.locator("#endpoints thead button", has_text="Wall ms").click()
    values = [float(v) for v in page.locator(wall_cells).evaluate_all(_SORT_KEYS)]
    assert values == sorted(values, reverse=True)
    page.locator("#endpoints thead button", has_text="Wall ms").click()
    values = [float(v) for v in page.locator(wall_cells).evaluate_all(_SORT_KEYS)]
    assert values == sorted(values)
    page.locator("#endpoints thead button", has_text="Endpoint").click()
    names = page.locator("#endpoints tbody th a").all_text_contents()
    assert names == sorted(names, key=str.lower)
    assert page.locator("#endpoints thead th[aria-sort]").count() == 1
    assert page.locator("text=Host CPU").count() == 1
    watch.clean()


def test_flamegraph_zoom_search_and_modes(context: Any, site: Site) -> None:
    page = context.new_page()
    watch = Watch(page)
    page.goto(site.page_url(f"/endpoints/{endpoint_id('GET /report')}"))
    page.wait_for_selector("#flame[data-ready='1']")
    full = _svg_width(page)
    render = _frame_width(page, "render_rows")
    assert 0 < render < full
    # Hover shows a tooltip with the function, its file and its times.
    page.locator('#flame g.frame[aria-label^="render_rows"] rect').first.hover()
    tip = page.locator("#flame-tip")
    assert tip.is_visible()
    assert "render_rows" in tip.text_content()
    assert "app.py:" in tip.text_content()
    assert "Self CPU" in tip.text_content()
    # Click zooms: the clicked frame spans the full width; reset restores it.
    page.locator('#flame g.frame[aria-label^="render_rows"] rect').first.click()
    assert _frame_width(page, "render_rows") == pytest.approx(full, abs=1)
    assert page.locator("#flame-reset").is_enabled()
    page.locator("#flame-reset").click()
    assert _frame_width(page, "render_rows") == pytest.approx(render, rel=1e-6)
    # Search highlights the matches and shows their share.
    page.locator("#flame-search").fill("render_rows")
    page.wait_for_selector("#flame g.frame.match")
    share = float(page.locator("#flame-match").get_attribute("data-share"))
    assert 0 < share < 1
    assert "%" in page.locator("#flame-match").text_content()
    assert page.locator("#flame g.frame.dim").count() > 0
    page.locator("#flame-search").fill("")
    # Functions table filled from the data.
    assert page.locator("#functions tbody tr").count() > 3
    assert "render_rows" in page.locator("#functions tbody").text_content()
    watch.clean()


def test_mode_switch_changes_widths(context: Any, site: Site) -> None:
    page = context.new_page()
    watch = Watch(page)
    page.goto(site.page_url("/endpoints/all"))
    page.wait_for_selector("#flame[data-ready='1']")
    cpu = _frame_width(page, "GET /inventory")
    page.locator("input[name='mode'][value='wall']").check()
    page.wait_for_selector("#flame[data-mode='wall']")
    wall = _frame_width(page, "GET /inventory")
    assert wall > cpu * 2  # /inventory mostly sleeps: small on CPU, wide on wall time
    sleep = page.locator('#flame g.frame[aria-label="sleep"] rect').first
    assert sleep.get_attribute("fill") == "url(#flame-hatch)"
    watch.clean()


def test_hostile_names_are_text(context: Any, site: Site) -> None:
    page = context.new_page()
    watch = Watch(page)
    page.goto(site.page_url("/"))
    link = page.locator("#endpoints tbody th a", has_text="onerror")
    assert link.text_content() == "GET " + EVIL_PATH
    assert page.locator("img").count() == 0
    link.click()
    page.wait_for_selector("#flame[data-ready='1']")
    assert page.locator("h1").text_content() == "GET " + EVIL_PATH
    selector = EVIL_FUNCTION.replace('"', '\\"')
    assert page.locator(f'#flame g.frame[aria-label^="{selector} ("]').count() >= 1
    assert EVIL_FUNCTION in page.locator("#functions tbody").text_content()
    assert page.locator("img").count() == 0
    page.locator("#flame g.frame rect").first.hover()
    watch.clean()


def test_reset_from_the_page(context: Any, site: Site) -> None:
    page = context.new_page()
    watch = Watch(page)
    page.goto(site.page_url("/"))
    assert page.locator("#endpoints tbody tr").count() >= 5
    page.locator("#reset-window").click()
    assert page.locator("#reset-window").text_content() == "Click again to reset"
    with page.expect_navigation():
        page.locator("#reset-window").click()
    assert page.locator("#headline").text_content() == "No requests profiled yet in this window."
    watch.clean()


def test_reset_refused_cross_site(context: Any, site: Site) -> None:
    """A page of another origin cannot drive the reset with the cached credentials."""
    page = context.new_page()
    page.goto(site.page_url("/"))
    other = site.url.replace("127.0.0.1", "localhost")
    status = page.evaluate(
        """url => fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include'})
            .then(r => r.status, () => 'blocked')""",
        f"{other}{PREFIX}/api/reset",
    )
    assert status in (0, "blocked")  # opaque or refused; either way the server said 403
    page.reload()
    assert page.locator("#endpoints tbody tr").count() >= 5


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG file's header (its IHDR chunk)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_screenshots(
    context: Any, threaded_server: Callable[[WSGIApplication], ThreadedServer], tmp_path: Path
) -> None:
    """The README's pictures, from real data of the example app (no hostile names here): taken
    and checked on every run, saved into ``docs/`` with ``WSGIPROF_SCREENSHOTS=1``."""
    server = threaded_server(fresh_example_app())
    for path, count in (("/report", 30), ("/users/7", 30), ("/inventory", 10), ("/health", 30)):
        assert set(load(f"{server.url}{path}", count, 1)) == {200}
    site = Site(server.url, server)
    if os.environ.get("WSGIPROF_SCREENSHOTS") == "1":
        folder = REPO_ROOT / "docs"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path
    page = context.new_page()
    watch = Watch(page)
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(site.page_url("/"))
    names = page.locator("#endpoints tbody th a").all_text_contents()
    assert sorted(names) == [
        "GET /health",
        "GET /inventory",
        "GET /report",
        "GET /users/<int:user_id>",
    ]
    page.screenshot(path=str(folder / "overview.png"), full_page=True)
    page.goto(site.page_url(f"/endpoints/{endpoint_id('GET /report')}"))
    page.wait_for_selector("#flame[data-ready='1']")
    page.locator('#flame g.frame[aria-label^="render_rows"] rect').first.hover()
    assert "render_rows" in page.locator("#flame-tip").text_content()
    page.screenshot(
        path=str(folder / "flamegraph.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 860}
    )
    watch.clean()
    width, height = _png_size(folder / "overview.png")
    assert width == 1280
    assert height >= 860
    assert _png_size(folder / "flamegraph.png") == (1280, 860)


# -- runs and the differential flamegraph -----------------------------------------------------


@dataclass
class RunsSite:
    url: str
    store: MemoryStore

    def page_url(self, path: str = "/") -> str:
        return f"{self.url}{PREFIX}{path}"


def _report_profile(sampled: int, render_ms: float) -> EndpointProfile:
    view = Frame("views.report", "/srv/app/views.py", 10)
    build = Frame("build_rows", "/srv/app/report.py", 20)
    render = Frame("render_rows", "/srv/app/report.py", 40)
    build_cpu, render_cpu = 0.005 * sampled, render_ms / 1000 * sampled
    profile = EndpointProfile(
        "GET /report", requests=sampled, sampled=sampled, cpu=build_cpu + render_cpu
    )
    profile.wall = profile.cpu
    profile.stacks = {
        (view, build): Weight(sampled, build_cpu, build_cpu),
        (view, render): Weight(sampled, render_cpu, render_cpu),
    }
    return profile


@pytest.fixture
def runs_site(threaded_server: Callable[[WSGIApplication], ThreadedServer]) -> RunsSite:
    """A dashboard over a memory store holding two runs: render_rows costs 10 ms per request in
    ``baseline`` and 20 ms in ``slower`` (three times as many requests)."""
    store = MemoryStore()
    config = Config(enabled=True, sample_rate=1.0, token=TOKEN, store="memory")
    dashboard = Dashboard(
        config,
        read=store.read,
        reset=store.reset,
        engine="pyinstrument",
        runs=store,
        read_requests=store.read_requests,
    )
    for label, sampled, render_ms in (("baseline", 20, 10.0), ("slower", 60, 20.0)):
        store.flush({"GET /report": _report_profile(sampled, render_ms)}, ProcessInfo())
        store.save_run(label)
    server = threaded_server(dashboard)
    return RunsSite(server.url, store)


def _fill_of(page: Any, name: str) -> str:
    return str(
        page.locator(f'#flame g.frame[aria-label^="{name} ("] rect').first.get_attribute("fill")
    )


def test_differential_flamegraph(context: Any, runs_site: RunsSite) -> None:
    page = context.new_page()
    watch = Watch(page)
    page.goto(runs_site.page_url("/runs"))
    assert page.locator("#runs tbody tr").count() == 2
    # The compare form preselects the two newest runs.
    with page.expect_navigation():
        page.locator("#diff-go").click()
    page.wait_for_selector("#flame[data-ready='1']")
    assert "+100%" in page.locator("#diff-functions").text_content()
    # render_rows doubled per request: red; build_rows unchanged: neutral.
    assert _fill_of(page, "render_rows").startswith("hsl(0,")
    assert _fill_of(page, "build_rows") == "hsl(40,8%,82%)"
    render = page.locator('#flame g.frame[aria-label^="render_rows ("]').first
    assert render.get_attribute("data-change") == "+100%"
    # Widths are per request: after, render_rows is 20 of 25 ms; before, 10 of 15 ms.
    after = _frame_width(page, "render_rows")
    page.locator("input[name='mode'][value='a']").check()
    page.wait_for_selector("#flame[data-mode='a']")
    before = _frame_width(page, "render_rows")
    assert after / _svg_width(page) == pytest.approx(20 / 25, abs=0.01)
    assert before / _svg_width(page) == pytest.approx(10 / 15, abs=0.01)
    page.locator('#flame g.frame[aria-label^="render_rows ("] rect').first.hover()
    tip = page.locator("#flame-tip").text_content()
    assert "Before (baseline): 10 ms CPU per request" in tip
    assert "After (slower): 20 ms CPU per request" in tip
    watch.clean()


def test_runs_page_saves_opens_and_deletes(context: Any, runs_site: RunsSite) -> None:
    page = context.new_page()
    watch = Watch(page)
    runs_site.store.flush({"GET /report": _report_profile(5, 1.0)}, ProcessInfo())
    page.goto(runs_site.page_url("/runs"))
    page.locator("#run-label").fill("third <b>run</b>")
    with page.expect_navigation():
        page.locator("#save-run button").click()
    labels = page.locator("#runs tbody th a").all_text_contents()
    assert labels == ["baseline", "slower", "third <b>run</b>"]
    page.locator("#runs tbody th a", has_text="third").click()
    assert "third <b>run</b>" in page.locator("#run-banner").text_content()
    page.locator("#endpoints tbody th a").first.click()
    page.wait_for_selector("#flame[data-ready='1']")
    assert "run=" in page.url
    page.goto(runs_site.page_url("/runs"))
    delete = page.locator("button.delete-run").last
    delete.click()
    with page.expect_navigation():
        delete.click()
    assert page.locator("#runs tbody tr").count() == 2
    watch.clean()


def test_offline_diff_report_opens_from_disk(
    context: Any, runs_site: RunsSite, tmp_path: Path
) -> None:
    from wsgiprof.cli import write_report
    from wsgiprof.diff import compare, diff_flame

    a, b = (runs_site.store.load_run(run.id) for run in runs_site.store.list_runs()[:2])
    diff = compare(a.endpoints, b.endpoints, a_label="baseline", b_label="slower")
    flame = diff_flame(
        a.endpoints.values(), b.endpoints.values(), name="all", a_label="baseline", b_label="slower"
    )
    path = write_report(tmp_path / "diff.html", flame=flame, diff=diff.to_dict())
    page = context.new_page()
    watch = Watch(page)
    page.goto(path.as_uri())
    page.wait_for_selector("#flame[data-ready='1']")
    assert _fill_of(page, "render_rows").startswith("hsl(0,")
    watch.clean()
