"""The dashboard's pages, static files and flamegraph data, in-process through werkzeug's Client.

Content checks: every page renders, hostile endpoint, function, file and host names come out
escaped, the links are there, and the flamegraph JSON adds up to the endpoint's totals.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

from tests.test_dashboard_api import (
    BEARER,
    EVIL,
    EVIL_FRAME,
    HOST,
    MAIN,
    PREFIX,
    RENDER,
    SLEEP,
    TOKEN,
    FakeStore,
    _snapshot,
    basic,
    call,
    endpoint_id,
)
from wsgiprof.auth import LoginThrottle
from wsgiprof.config import Config
from wsgiprof.dashboard import Dashboard
from wsgiprof.dashboard.flame import TINY, flame_data, frame_kind
from wsgiprof.engines import engine_reason
from wsgiprof.export import EXPORTERS, FORMATS
from wsgiprof.model import OVERFLOW, EndpointProfile, Frame, Weight, merge_profiles
from wsgiprof.stores.base import Snapshot

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(_snapshot())


@pytest.fixture
def client(store: FakeStore) -> Client:
    config = Config(enabled=True, token=TOKEN, path=PREFIX, sample_rate=0.05)
    dashboard = Dashboard(
        config,
        read=store.read,
        reset=store.reset,
        engine="pyinstrument",
        throttle=LoginThrottle(),
        host=lambda: dict(HOST),
    )
    return Client(LintMiddleware(dashboard))


class _Collector(HTMLParser):
    """Collects tags and attributes, to check structure without regular expressions on HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(page: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = _Collector()
    collector.feed(page)
    return collector.tags


def assert_safe(page: str) -> None:
    """No markup from data, no inline script or style."""
    for raw in ("<img", "<b>", "<style", " style=", "onerror=alert(1)>", "<script>alert"):
        assert raw not in page
    for tag, attrs in parse(page):
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "script":
            assert (attrs.get("src") or "").startswith(f"{PREFIX}/static/")
        assert "style" not in attrs


def get_page(client: Client, path: str) -> str:
    response = call(client, path, headers=basic(TOKEN))
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert page.startswith("<!DOCTYPE html>")
    assert_safe(page)
    return page


# Overview


def test_overview(client: Client, store: FakeStore) -> None:
    page = get_page(client, "/")
    assert store.reads == 1
    assert 'id="headline"' in page
    assert "GET /report used 75% of sampled CPU" in page
    assert "render_rows" in page
    assert "GET /&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;host&lt;/b&gt;" in page
    assert "Host CPU" in page
    assert "42%" in page
    assert "pyinstrument" in page
    reason = html.escape(engine_reason("pyinstrument"))
    assert f'<strong title="{reason}">pyinstrument</strong>' in page  # which engine, and why
    assert "5.0%" in page  # the sample rate
    ident = endpoint_id("GET /report")
    assert f'href="{PREFIX}/endpoints/{ident}"' in page
    assert f'href="{PREFIX}/endpoints/all"' in page
    for fmt in FORMATS:
        assert f'href="{PREFIX}/api/profile.{fmt}?weight=cpu"' in page
        assert f'href="{PREFIX}/api/profile.{fmt}?weight=wall"' in page
        assert EXPORTERS[fmt].description.split(" ")[0] in page
    assert f'<link rel="stylesheet" href="{PREFIX}/static/dashboard.css">' in page


def test_overview_rows_in_cpu_order_with_sort_keys(client: Client) -> None:
    page = get_page(client, "/")
    names = re.findall(r'<th scope="row" data-sort="([^"]*)">', page)
    assert names == ["GET /report", "GET /&lt;img src=x onerror=alert(1)&gt;"]
    assert 'data-type="number" aria-sort="descending"' in page
    assert page.count('<button type="button" class="sort">') == 9
    assert "verdict-mixed" in page  # GET /report: 0.3 CPU s over 0.5 wall s


def test_overview_empty_window(client: Client, store: FakeStore) -> None:
    store.snapshot = Snapshot(window_start=0.0, window_end=1.0)
    page = get_page(client, "/")
    assert "No requests profiled yet" in page


def test_static_files(client: Client) -> None:
    for name, mimetype in (
        ("dashboard.css", "text/css"),
        ("dashboard.js", "text/javascript"),
        ("flame.js", "text/javascript"),
    ):
        response = call(client, f"/static/{name}", headers=BEARER)
        assert response.status_code == 200, name
        assert response.mimetype == mimetype
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        text = response.get_data(as_text=True)
        if name.endswith(".js"):
            assert "'use strict'" in text
            assert "innerHTML" not in text
            assert "eval(" not in text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/../api.py", "/static/api.py", "/static/Flame.js"]
)
def test_static_refuses_other_files(client: Client, path: str) -> None:
    assert call(client, path, headers=BEARER).status_code == 404


def test_static_needs_auth(client: Client) -> None:
    assert call(client, "/static/flame.js").status_code == 401


# Endpoint pages


def test_endpoint_page_escapes_and_links(client: Client) -> None:
    ident = endpoint_id(EVIL)
    page = get_page(client, f"/endpoints/{ident}")
    assert "<h1>GET /&lt;img src=x onerror=alert(1)&gt;</h1>" in page
    assert f'data-src="{PREFIX}/api/endpoints/{ident}/flame.json"' in page
    assert f'src="{PREFIX}/static/flame.js"' in page
    for fmt in FORMATS:
        for weight in ("cpu", "wall"):
            assert f'href="{PREFIX}/api/endpoints/{ident}/profile.{fmt}?weight={weight}"' in page
    assert 'id="flame-search"' in page
    assert 'name="mode" value="wall"' in page
    assert 'id="functions"' in page
    assert "<title>wsgiprof: GET /&lt;img src=x onerror=alert(1)&gt;</title>" in page


def test_endpoint_page_facts(client: Client) -> None:
    page = get_page(client, f"/endpoints/{endpoint_id('GET /report')}")
    assert "<dt>CPU share</dt><dd>75.0%</dd>" in page
    assert "<dt>Mean CPU</dt><dd>150 ms</dd>" in page


def test_all_endpoints_page(client: Client) -> None:
    page = get_page(client, "/endpoints/all")
    assert f'data-src="{PREFIX}/api/flame.json"' in page
    assert "2 endpoints" in page


def test_unknown_endpoint_page(client: Client) -> None:
    assert call(client, "/endpoints/ffffffffffff", headers=BEARER).status_code == 404
    assert call(client, "/api/endpoints/ffffffffffff/flame.json", headers=BEARER).status_code == 404


# Flamegraph data


def _flame(client: Client, path: str) -> dict[str, Any]:
    response = call(client, path, headers=BEARER)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert isinstance(data, dict)
    return data


def _check_trie(data: dict[str, Any]) -> None:
    nodes = data["nodes"]
    n = len(nodes["parent"])
    assert {len(v) for v in nodes.values()} == {n}
    for i, parent in enumerate(nodes["parent"]):
        assert -1 <= parent < i
    for kind in ("cpu", "wall", "samples"):
        values = nodes[kind]
        roots = sum(values[i] for i in range(n) if nodes["parent"][i] == -1)
        assert roots == data["totals"][kind]
        children: dict[int, int] = {}
        for i, parent in enumerate(nodes["parent"]):
            if parent >= 0:
                children[parent] = children.get(parent, 0) + values[i]
        for parent, below in children.items():
            assert below <= values[parent]  # inclusive weights: self time is never negative
    assert all(0 <= f < len(data["frames"]) for f in nodes["frame"])


def test_flame_json_of_one_endpoint(client: Client) -> None:
    data = _flame(client, f"/api/endpoints/{endpoint_id('GET /report')}/flame.json")
    _check_trie(data)
    profile = _snapshot().endpoints["GET /report"]
    assert data["totals"]["cpu"] == round(profile.total("cpu") * 1e6)
    assert data["totals"]["wall"] == round(profile.total("wall") * 1e6)
    assert data["name"] == "GET /report"
    assert data["unit"] == "us"
    frames = {tuple(f[:4]): f[4] for f in data["frames"]}
    assert frames == {
        (MAIN.function, MAIN.file, MAIN.line, 0): "app",
        (RENDER.function, RENDER.file, RENDER.line, 0): "app",
        (SLEEP.function, SLEEP.file, SLEEP.line, 1): "builtin",
    }
    nodes = data["nodes"]
    assert nodes["parent"] == [-1, 0, 0]
    assert nodes["cpu"] == [300000, 200000, 0]
    assert nodes["wall"] == [500000, 200000, 200000]


def test_flame_json_keeps_hostile_names_as_data(client: Client) -> None:
    data = _flame(client, f"/api/endpoints/{endpoint_id(EVIL)}/flame.json")
    assert data["name"] == EVIL
    assert data["frames"][0][:3] == [EVIL_FRAME.function, EVIL_FRAME.file, EVIL_FRAME.line]


def test_flame_json_of_all_endpoints(client: Client) -> None:
    data = _flame(client, "/api/flame.json")
    _check_trie(data)
    snapshot = _snapshot()
    assert data["totals"]["cpu"] == round(
        sum(p.total("cpu") for p in snapshot.endpoints.values()) * 1e6
    )
    roots = [
        data["frames"][data["nodes"]["frame"][i]]
        for i, parent in enumerate(data["nodes"]["parent"])
        if parent == -1
    ]
    assert sorted(r[0] for r in roots) == sorted(snapshot.endpoints)
    assert {r[4] for r in roots} == {"endpoint"}


def test_flame_json_is_gzipped_when_accepted(client: Client) -> None:
    big = EndpointProfile("GET /big", requests=1, sampled=1, cpu=1.0, wall=1.0)
    big.stacks = {
        (MAIN, Frame(f"f{i}", "/srv/app/x.py", i)): Weight(1, 0.001, 0.001) for i in range(300)
    }
    snapshot = Snapshot(window_start=0.0, window_end=1.0, endpoints={big.name: big})
    store = FakeStore(snapshot)
    config = Config(enabled=True, token=TOKEN, path=PREFIX)
    dashboard = Dashboard(
        config, read=store.read, reset=store.reset, engine="pyinstrument", host=dict
    )
    gz_client = Client(LintMiddleware(dashboard))
    path = f"/api/endpoints/{big.id}/flame.json"
    plain = call(gz_client, path, headers=BEARER)
    zipped = call(gz_client, path, headers={**BEARER, "Accept-Encoding": "gzip, br"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.data) == plain.data
    assert len(zipped.data) < len(plain.data) / 3
    refused = call(gz_client, path, headers={**BEARER, "Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


def test_flame_data_folds_stacks_past_the_budget() -> None:
    profile = EndpointProfile("GET /wide", requests=1, sampled=1)
    profile.stacks = {
        (MAIN, Frame(f"f{i}", "/srv/app/x.py", i)): Weight(1, 0.001 * (i + 1), 0.001 * (i + 1))
        for i in range(100)
    }
    data = flame_data([profile], name="GET /wide", max_stacks=10)
    _check_trie(data)
    assert data["omitted_stacks"] == 95  # the 5 heaviest by CPU (and by wall) stay
    assert data["totals"]["cpu"] == round(profile.total("cpu") * 1e6)
    names = [data["frames"][f][0] for f in data["nodes"]["frame"]]
    assert OVERFLOW.function in names
    assert {"f99", "f95"} <= set(names)
    assert "f94" not in names


def test_flame_data_matches_merge_profiles() -> None:
    """The all-endpoints trie holds the same stacks as model.merge_profiles."""
    snapshot = _snapshot()
    profiles = sorted(snapshot.endpoints.values(), key=lambda p: p.name)
    data = flame_data(profiles, name="all", by_endpoint=True)
    merged = merge_profiles(profiles)
    leaves: dict[tuple[str, ...], int] = {}
    nodes = data["nodes"]
    n = len(nodes["parent"])
    own = list(nodes["wall"])
    for i, parent in enumerate(nodes["parent"]):
        if parent >= 0:
            own[parent] -= nodes["wall"][i]
    for i in range(n):
        if own[i] == 0:
            continue
        path = []
        j = i
        while j >= 0:
            path.append(data["frames"][nodes["frame"][j]][0])
            j = nodes["parent"][j]
        leaves[tuple(reversed(path))] = own[i]
    expected = {
        tuple(f.function for f in stack): round(w.wall * 1e6) for stack, w in merged.stacks.items()
    }
    assert leaves == expected


@pytest.mark.parametrize(
    ("file", "kind"),
    [
        ("/srv/app/views.py", "app"),
        ("/venv/lib/python3.12/site-packages/flask/app.py", "lib"),
        ("/usr/lib/python3/dist-packages/yaml/x.py", "lib"),
        ("/usr/lib/python3.11/json/encoder.py", "std"),
        ("<built-in>", "builtin"),
        ("<frozen importlib._bootstrap>", "builtin"),
        ("<wsgiprof>", "synthetic"),
        ("<endpoint>", "endpoint"),
    ],
)
def test_frame_kind(file: str, kind: str) -> None:
    assert frame_kind(file) == kind


def test_pages_and_json_carry_security_headers(client: Client) -> None:
    for path in ("/", "/endpoints/all", "/api/flame.json", "/static/flame.js"):
        response = call(client, path, headers=BEARER)
        assert response.status_code == 200
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["Cache-Control"] == "no-store"


def test_json_is_valid_for_strict_parsers(client: Client) -> None:
    body = call(client, "/api/flame.json", headers=BEARER).get_data(as_text=True)
    json.loads(body, parse_constant=lambda name: pytest.fail(f"non-standard constant {name}"))


def test_flame_data_merges_paths_too_narrow_to_draw() -> None:
    handler = Frame("handler", "/srv/app/views.py", 1)
    heavy = Frame("heavy", "/srv/app/views.py", 10)
    profile = EndpointProfile("GET /x")
    profile.stacks[(handler, heavy)] = Weight(100, 1.0, 1.0)
    for i in range(500):
        leaf = Frame(f"tiny_{i}", "/srv/app/views.py", 100 + i)
        profile.stacks[(handler, leaf)] = Weight(1, 1e-6, 1e-6)
    data = flame_data([profile], name="GET /x")
    nodes, frames = data["nodes"], data["frames"]
    names = [frames[f][0] for f in nodes["frame"]]
    assert names == ["handler", "heavy", TINY.function]
    assert data["pruned_nodes"] == 499
    assert nodes["cpu"][2] == 500  # microseconds: nothing lost
    assert nodes["cpu"][0] == nodes["cpu"][1] + nodes["cpu"][2] == data["totals"]["cpu"]
    assert nodes["parent"] == [-1, 0, 0]


def test_flame_data_keeps_every_path_without_a_minimum() -> None:
    handler = Frame("handler", "/srv/app/views.py", 1)
    profile = EndpointProfile("GET /x")
    profile.stacks[(handler,)] = Weight(100, 1.0, 1.0)
    for i in range(50):
        profile.stacks[(handler, Frame(f"t{i}", "/srv/a.py", i))] = Weight(1, 1e-6, 1e-6)
    data = flame_data([profile], name="GET /x", min_fraction=0.0)
    assert len(data["nodes"]["parent"]) == 51
    assert data["pruned_nodes"] == 0
