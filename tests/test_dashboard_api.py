"""The protected route's WSGI application: auth, throttling, JSON API, downloads, reset, headers.

Every request goes through werkzeug's LintMiddleware, and its warnings fail the test.
"""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import re
from typing import Any

import pytest
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client, TestResponse

from wsgiprof.auth import LoginThrottle
from wsgiprof.config import Config
from wsgiprof.dashboard import Dashboard
from wsgiprof.dashboard.api import CONTENT_SECURITY_POLICY
from wsgiprof.export import FORMATS, get_exporter
from wsgiprof.model import EndpointProfile, Frame, Weight
from wsgiprof.stores import MemoryStore
from wsgiprof.stores.base import ProcessInfo, RequestRow, Snapshot
from wsgiprof.summary import build_summary

pytestmark = pytest.mark.filterwarnings("error")

TOKEN = "s3cret-token-0123"
PREFIX = "/_wsgiprof"
EVIL = "GET /<img src=x onerror=alert(1)>"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HOST = {"cpu_percent": 42.0, "load": [1.5, 1.0, 0.5], "cores": 2, "memory_percent": 30.0}

MAIN = Frame("views.report", "/srv/app/views.py", 10)
RENDER = Frame("render_rows", "/srv/app/report.py", 40)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)
EVIL_FRAME = Frame("<script>alert(2)</script>", '/srv/"app"/x.py', 3)


def _snapshot() -> Snapshot:
    report = EndpointProfile("GET /report", requests=10, sampled=2, cpu=0.3, wall=0.5)
    report.stacks = {
        (MAIN, RENDER): Weight(samples=20, wall=0.2, cpu=0.2),
        (MAIN,): Weight(samples=10, wall=0.1, cpu=0.1),
        (MAIN, SLEEP): Weight(samples=20, wall=0.2, cpu=0.0),
    }
    report.latency.add(0.25)
    evil = EndpointProfile(EVIL, requests=1, sampled=1, cpu=0.1, wall=0.1)
    evil.stacks = {(EVIL_FRAME,): Weight(samples=10, wall=0.1, cpu=0.1)}
    return Snapshot(
        window_start=1764230400.0,
        window_end=1764230460.0,
        endpoints={p.name: p for p in (report, evil)},
        processes=[
            ProcessInfo(
                pid=42, host="<b>host</b>", cpu_percent=50.0, rss_bytes=1, last_seen=1764230459.0
            )
        ],
    )


class FakeStore:
    """Serves a fixed snapshot and counts calls."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.reads = 0
        self.resets = 0

    def read(self) -> Snapshot:
        self.reads += 1
        return copy.deepcopy(self.snapshot)

    def reset(self) -> float:
        self.resets += 1
        return 1764230999.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(_snapshot())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dashboard(store: FakeStore, clock: FakeClock) -> Dashboard:
    config = Config(enabled=True, token=TOKEN, path=PREFIX, sample_rate=0.05)
    return Dashboard(
        config,
        read=store.read,
        reset=store.reset,
        engine="pyinstrument",
        throttle=LoginThrottle(clock=clock),
        host=lambda: dict(HOST),
    )


@pytest.fixture
def client(dashboard: Dashboard) -> Client:
    return Client(LintMiddleware(dashboard))


def call(
    client: Client,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    addr: str = "10.0.0.1",
    **kwargs: Any,
) -> TestResponse:
    return client.open(
        PREFIX + path,
        method=method,
        headers=headers or {},
        environ_base={"REMOTE_ADDR": addr},
        buffered=True,
        **kwargs,
    )


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def error_of(response: TestResponse) -> str:
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert isinstance(data, dict)
    assert set(data) == {"error"}
    message = data["error"]
    assert isinstance(message, str)
    return message


def endpoint_id(name: str) -> str:
    return _snapshot().endpoints[name].id


# Auth


def test_missing_credentials(client: Client) -> None:
    response = call(client, "/api/summary")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="wsgiprof", charset="UTF-8"'
    assert "Authorization" in error_of(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-token-0123"},
        {"Authorization": f"Bearer {TOKEN}x"},
        basic("wrong-token-0123"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Token {TOKEN}"},
    ],
)
def test_wrong_credentials(client: Client, store: FakeStore, headers: dict[str, str]) -> None:
    response = call(client, "/api/summary", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="wsgiprof"')
    assert error_of(response)
    assert store.reads == 0


@pytest.mark.parametrize(
    "headers",
    [BEARER, basic(TOKEN), basic(TOKEN, user=""), basic(TOKEN, user="zoë")],
    ids=["bearer", "basic", "basic-empty-user", "basic-utf8-user"],
)
def test_valid_credentials(client: Client, headers: dict[str, str]) -> None:
    response = call(client, "/api/summary", headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("name", ["token", "access_token", "Access-Token", "api_key", "auth"])
def test_token_in_query_string_is_refused(client: Client, store: FakeStore, name: str) -> None:
    response = call(client, "/api/summary", headers=BEARER, query_string={name: TOKEN})
    assert response.status_code == 400
    assert "Authorization header" in error_of(response)
    assert store.reads == 0


def test_throttle_after_five_failures(client: Client, clock: FakeClock) -> None:
    wrong = {"Authorization": "Bearer wrong-token-0123"}
    for _ in range(5):
        assert call(client, "/api/summary", headers=wrong).status_code == 401
    blocked = call(client, "/api/summary", headers=BEARER)
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert "too many" in error_of(blocked)
    assert call(client, "/api/summary", headers=BEARER, addr="10.0.0.2").status_code == 200
    clock.now += 61
    assert call(client, "/api/summary", headers=BEARER).status_code == 200


def test_throttle_window_slides(client: Client, clock: FakeClock) -> None:
    wrong = basic("wrong-token-0123")
    for _ in range(5):
        assert call(client, "/api/summary", headers=wrong).status_code == 401
        clock.now += 10
    blocked = call(client, "/api/summary", headers=BEARER)
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == "10"
    clock.now += 11
    assert call(client, "/api/summary", headers=BEARER).status_code == 200
    assert call(client, "/api/summary", headers=wrong).status_code == 401
    assert call(client, "/api/summary", headers=BEARER).status_code == 429


def test_successes_and_missing_credentials_do_not_count(client: Client) -> None:
    for _ in range(20):
        assert call(client, "/api/summary", headers=BEARER).status_code == 200
        assert call(client, "/api/summary").status_code == 401
    wrong = {"Authorization": "Bearer wrong-token-0123"}
    for _ in range(4):
        assert call(client, "/api/summary", headers=wrong).status_code == 401
    assert call(client, "/api/summary", headers=BEARER).status_code == 200


def test_throttle_memory_is_bounded() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=2, window=60.0, max_clients=3, clock=clock)
    for n in range(10):
        throttle.failure(f"10.0.0.{n}")
        throttle.failure(f"10.0.0.{n}")
    assert throttle.retry_after("10.0.0.9") == 60.0
    assert throttle.retry_after("10.0.0.0") is None
    assert len(throttle._failures) == 3


# Summary


def test_summary_reads_once(client: Client, store: FakeStore) -> None:
    response = call(client, "/api/summary", headers=BEARER)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert store.reads == 1
    expected = build_summary(_snapshot(), engine="pyinstrument", sample_rate=0.05, host=HOST)
    assert response.get_json() == json.loads(json.dumps(expected))


def test_head_is_get_without_body(client: Client) -> None:
    get = call(client, "/api/summary", headers=BEARER)
    head = call(client, "/api/summary", method="HEAD", headers=BEARER)
    assert head.status_code == 200
    assert head.data == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


# Downloads


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("weight", ["cpu", "wall"])
@pytest.mark.parametrize("one", [True, False], ids=["one", "all"])
def test_downloads(client: Client, fmt: str, weight: str, one: bool) -> None:
    ident = endpoint_id("GET /report")
    path = f"/api/endpoints/{ident}/profile.{fmt}" if one else f"/api/profile.{fmt}"
    response = call(client, path, headers=BEARER, query_string={"weight": weight})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == get_exporter(fmt).media_type
    assert response.data
    slug = "get-report" if one else "all-endpoints"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{slug}.{fmt}"'


def test_download_default_weight_is_cpu(client: Client) -> None:
    ident = endpoint_id("GET /report")
    default = call(client, f"/api/endpoints/{ident}/profile.folded", headers=BEARER)
    cpu = call(client, f"/api/endpoints/{ident}/profile.folded?weight=cpu", headers=BEARER)
    wall = call(client, f"/api/endpoints/{ident}/profile.folded?weight=wall", headers=BEARER)
    assert default.data == cpu.data
    assert wall.data != cpu.data
    assert b"sleep" in wall.data
    assert b"sleep" not in cpu.data


def test_download_of_weird_name_has_safe_filename(client: Client) -> None:
    response = call(client, f"/api/endpoints/{endpoint_id(EVIL)}/profile.prof", headers=BEARER)
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="[a-z0-9-]+\.prof"', disposition)


@pytest.mark.parametrize("weight", ["bogus", "CPU", ""])
def test_bad_weight(client: Client, weight: str) -> None:
    response = call(client, "/api/profile.folded", headers=BEARER, query_string={"weight": weight})
    assert response.status_code == 400
    assert "cpu" in error_of(response)


def test_repeated_weight(client: Client) -> None:
    response = call(client, "/api/profile.folded?weight=cpu&weight=wall", headers=BEARER)
    assert response.status_code == 400


def test_unknown_endpoint(client: Client) -> None:
    response = call(client, "/api/endpoints/ffffffffffff/profile.folded", headers=BEARER)
    assert response.status_code == 404
    assert "ffffffffffff" in error_of(response)


@pytest.mark.parametrize(
    "path", ["/api/profile.svg", f"/api/endpoints/{'0' * 12}/profile.txt", "/api/profile.pb"]
)
def test_unknown_format_lists_formats(client: Client, store: FakeStore, path: str) -> None:
    response = call(client, path, headers=BEARER)
    assert response.status_code == 400
    message = error_of(response)
    for fmt in FORMATS:
        assert fmt in message
    assert store.reads == 0


# Routing and methods


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/summary/", "/endpoints/", "//api/summary"])
def test_unknown_path(client: Client, path: str) -> None:
    response = call(client, path, headers=BEARER)
    assert response.status_code == 404
    assert error_of(response)


def test_unknown_path_needs_auth_first(client: Client) -> None:
    assert call(client, "/nope").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/summary", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
        ("PUT", "/api/profile.folded", "GET, HEAD"),
        ("GET", "/api/reset", "POST"),
    ],
)
def test_wrong_method(client: Client, method: str, path: str, allow: str) -> None:
    response = call(client, path, method=method, headers=BEARER)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert error_of(response)


def test_prefix_without_slash_redirects(client: Client) -> None:
    response = call(client, "", headers=BEARER)
    assert response.status_code == 308
    assert response.headers["Location"] == f"http://localhost{PREFIX}/"


def test_handles(dashboard: Dashboard) -> None:
    assert dashboard.handles(PREFIX)
    assert dashboard.handles(PREFIX + "/")
    assert dashboard.handles(PREFIX + "/api/summary")
    assert not dashboard.handles(PREFIX + "x")
    assert not dashboard.handles("/")
    assert not dashboard.handles("/other" + PREFIX)


def test_no_token_no_route(store: FakeStore) -> None:
    config = Config(enabled=True, token=None, path=PREFIX)
    dashboard = Dashboard(config, read=store.read, reset=store.reset, engine="pyinstrument")
    assert not dashboard.handles(PREFIX + "/")
    response = call(Client(LintMiddleware(dashboard)), "/api/summary", headers=BEARER)
    assert response.status_code == 404
    assert store.reads == 0


# Reset


def test_reset_with_bearer(client: Client, store: FakeStore) -> None:
    response = call(client, "/api/reset", method="POST", headers=BEARER)
    assert response.status_code == 200
    assert response.get_json() == {"window": {"start": 1764230999.5}}
    assert store.resets == 1


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost.evil.example"},
        {"Origin": "https://localhost"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ],
    ids=[
        "no-origin",
        "cross-site",
        "suffix-host",
        "other-scheme",
        "null",
        "fetch-cross",
        "fetch-same-site",
        "fetch-cross-origin-ok",
    ],
)
def test_reset_with_basic_needs_same_origin(
    client: Client, store: FakeStore, extra: dict[str, str]
) -> None:
    response = call(client, "/api/reset", method="POST", headers={**basic(TOKEN), **extra})
    assert response.status_code == 403
    assert "same" in error_of(response)
    assert store.resets == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"Origin": "http://localhost"},
        {"Origin": "http://LOCALHOST:80"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
    ],
)
def test_reset_with_basic_and_same_origin(
    client: Client, store: FakeStore, extra: dict[str, str]
) -> None:
    response = call(client, "/api/reset", method="POST", headers={**basic(TOKEN), **extra})
    assert response.status_code == 200
    assert store.resets == 1


def test_reset_same_origin_on_custom_port(client: Client, store: FakeStore) -> None:
    response = client.open(
        PREFIX + "/api/reset",
        method="POST",
        base_url="https://staging.example:8443",
        headers={**basic(TOKEN), "Origin": "https://staging.example:8443"},
        buffered=True,
    )
    assert response.status_code == 200
    assert store.resets == 1


# Headers on every response


SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/summary", BEARER, 200),
        ("HEAD", "/api/summary", BEARER, 200),
        ("GET", "/", BEARER, 200),
        ("GET", "/api/profile.prof", BEARER, 200),
        ("GET", "/api/summary", {}, 401),
        ("GET", "/api/summary?token=x", {}, 400),
        ("GET", "/api/profile.svg", BEARER, 400),
        ("GET", "/nope", BEARER, 404),
        ("GET", "/api/reset", BEARER, 405),
        ("POST", "/api/reset", basic(TOKEN), 403),
        ("POST", "/api/reset", BEARER, 200),
        ("GET", "", BEARER, 308),
    ],
)
def test_security_headers_everywhere(
    client: Client, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = call(client, path, method=method, headers=headers)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_security_headers_on_429(client: Client) -> None:
    for _ in range(6):
        response = call(client, "/", headers=basic("nope-nope-nope"))
    assert response.status_code == 429
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_csp_forbids_inline_script() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


# Pages (their content is tested in test_dashboard_pages.py)


def test_endpoint_page_unknown(client: Client) -> None:
    response = call(client, "/endpoints/000000000000", headers=BEARER)
    assert response.status_code == 404
    assert error_of(response)


def test_index_page_empty(store: FakeStore, client: Client) -> None:
    store.snapshot = Snapshot(window_start=0.0, window_end=1.0)
    response = call(client, "/", headers=BEARER)
    assert response.status_code == 200
    assert "No requests profiled yet" in response.get_data(as_text=True)


def test_links_honour_script_name(dashboard: Dashboard) -> None:
    client = Client(LintMiddleware(dashboard))
    response = client.get(
        PREFIX + "/", base_url="http://localhost/app", headers=BEARER, buffered=True
    )
    assert response.status_code == 200
    assert f'href="/app{PREFIX}/endpoints/' in response.get_data(as_text=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_download_all_of_empty_window(client: Client, store: FakeStore, fmt: str) -> None:
    store.snapshot = Snapshot(window_start=0.0, window_end=1.0)
    response = call(client, f"/api/profile.{fmt}", headers=BEARER)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == get_exporter(fmt).media_type


# -- saved runs, comparisons, request rows ----------------------------------------------------


@pytest.fixture
def runs_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def runs_client(runs_store: MemoryStore) -> Client:
    config = Config(enabled=True, token=TOKEN, path=PREFIX, sample_rate=0.05)
    dashboard = Dashboard(
        config,
        read=runs_store.read,
        reset=runs_store.reset,
        engine="pyinstrument",
        host=lambda: dict(HOST),
        runs=runs_store,
        read_requests=runs_store.read_requests,
    )
    return Client(LintMiddleware(dashboard))


def _fill(store: MemoryStore, render_cpu: float) -> None:
    snapshot = _snapshot()
    report = snapshot.endpoints["GET /report"]
    report.stacks[(MAIN, RENDER)] = Weight(samples=20, wall=render_cpu, cpu=render_cpu)
    report.cpu = render_cpu + 0.1
    store.flush(snapshot.endpoints, ProcessInfo(pid=42, host="web-1"))


def _save(client: Client, label: str, headers: dict[str, str] | None = None) -> TestResponse:
    return call(
        client,
        "/api/runs",
        method="POST",
        headers=headers or BEARER,
        data=json.dumps({"label": label}),
        content_type="application/json",
    )


def test_save_list_open_and_delete_runs(runs_client: Client, runs_store: MemoryStore) -> None:
    _fill(runs_store, 0.2)
    saved = _save(runs_client, "baseline")
    assert saved.status_code == 201
    run = saved.get_json()["run"]
    assert (run["label"], run["requests"], run["sampled"]) == ("baseline", 11, 3)
    assert runs_store.read().endpoints == {}, "a new window started"

    listed = call(runs_client, "/api/runs", headers=BEARER).get_json()["runs"]
    assert [r["id"] for r in listed] == [run["id"]]

    summary = call(runs_client, f"/api/summary?run={run['id']}", headers=BEARER).get_json()
    assert summary["run"]["label"] == "baseline"
    assert summary["host"] is None
    assert summary["endpoints"][0]["name"] == "GET /report"
    download = call(runs_client, f"/api/profile.folded?run={run['id']}", headers=BEARER)
    assert b"render_rows" in download.data
    assert "baseline-all-endpoints.folded" in download.headers["Content-Disposition"]
    report = endpoint_id("GET /report")
    flame = call(runs_client, f"/api/endpoints/{report}/flame.json?run={run['id']}", headers=BEARER)
    assert flame.get_json()["name"] == "GET /report"

    page = call(runs_client, f"/runs/{run['id']}", headers=BEARER)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="run-banner"' in text
    assert f"/endpoints/{report}?run={run['id']}" in text
    runs_page = call(runs_client, "/runs", headers=BEARER).get_data(as_text=True)
    assert "baseline" in runs_page
    assert f'data-id="{run["id"]}"' in runs_page

    deleted = call(runs_client, f"/api/runs/{run['id']}", method="DELETE", headers=BEARER)
    assert deleted.status_code == 200
    again = call(runs_client, f"/api/runs/{run['id']}", method="DELETE", headers=BEARER)
    assert again.status_code == 404
    missing = call(runs_client, f"/api/summary?run={run['id']}", headers=BEARER)
    assert missing.status_code == 404
    assert "no saved run" in error_of(missing)
    assert call(runs_client, f"/runs/{run['id']}", headers=BEARER).status_code == 404


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'{"label": 3}', b'{"label": ""}', b'{"label": "a\\tb"}']
)
def test_save_run_refuses_bad_bodies(runs_client: Client, body: bytes) -> None:
    response = call(
        runs_client,
        "/api/runs",
        method="POST",
        headers=BEARER,
        data=body,
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "label" in error_of(response)


def test_run_changes_with_basic_need_same_origin(runs_client: Client) -> None:
    cross = {**basic(TOKEN), "Origin": "http://evil.example"}
    assert _save(runs_client, "x", cross).status_code == 403
    same = {**basic(TOKEN), "Sec-Fetch-Site": "same-origin"}
    run = _save(runs_client, "x", same).get_json()["run"]
    path = f"/api/runs/{run['id']}"
    assert call(runs_client, path, method="DELETE", headers=cross).status_code == 403
    assert call(runs_client, path, method="DELETE", headers=same).status_code == 200


def test_runs_unavailable_without_a_store(client: Client) -> None:
    assert call(client, "/api/runs", headers=BEARER).status_code == 404
    assert call(client, "/api/summary?run=1", headers=BEARER).status_code == 404
    assert call(client, "/api/requests.csv", headers=BEARER).status_code == 404


def test_diff_by_id_label_and_current(runs_client: Client, runs_store: MemoryStore) -> None:
    _fill(runs_store, 0.2)
    first = _save(runs_client, "baseline").get_json()["run"]
    _fill(runs_store, 0.4)
    data = call(runs_client, f"/api/diff?a={first['id']}&b=current", headers=BEARER).get_json()
    assert (data["a"], data["b"]) == ("baseline", "current window")
    render = next(f for f in data["functions"] if f["name"] == "render_rows")
    assert render["self_change"] == pytest.approx(1.0)
    assert render["self_ms_per_request"] == [pytest.approx(100), pytest.approx(200)]
    _save(runs_client, "slower")
    by_label = call(runs_client, "/api/diff?a=baseline&b=slower", headers=BEARER).get_json()
    assert by_label["endpoints"] == data["endpoints"]

    flame = call(runs_client, "/api/diff/flame.json?a=baseline&b=slower", headers=BEARER)
    body = flame.get_json()
    assert body["diff"]["a"] == "baseline"
    assert set(body["nodes"]) == {"parent", "frame", "a", "b"}
    one = call(
        runs_client,
        f"/api/diff/flame.json?a=baseline&b=slower&endpoint={endpoint_id('GET /report')}",
        headers=BEARER,
    ).get_json()
    assert one["name"] == "GET /report"
    page = call(runs_client, "/diff?a=baseline&b=slower", headers=BEARER)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "+100%" in text
    assert "&lt;script&gt;" in text
    assert "<script>alert" not in text

    assert call(runs_client, "/api/diff?a=baseline", headers=BEARER).status_code == 400
    missing = call(runs_client, "/api/diff?a=nope&b=current", headers=BEARER)
    assert missing.status_code == 404


def test_requests_csv(runs_client: Client, runs_store: MemoryStore) -> None:
    start = runs_store.window_start()
    runs_store.flush_requests(
        [
            RequestRow(start + 1.25, "GET /report", 200, 41.5, 44.0, 42, "web-1"),
            RequestRow(start + 2.5, "=HYPERLINK(1)", 500, 1.0, 2.0, 43, "web-2"),
        ]
    )
    response = call(runs_client, "/api/requests.csv", headers=BEARER)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == [
        "timestamp",
        "time_utc",
        "endpoint",
        "status",
        "cpu_ms",
        "wall_ms",
        "pid",
        "host",
    ]
    assert rows[1][2:] == ["GET /report", "200", "41.500", "44.000", "42", "web-1"]
    assert float(rows[1][0]) == pytest.approx(start + 1.25, abs=1e-3)
    assert rows[1][1].endswith("Z")
    assert rows[2][2] == "'=HYPERLINK(1)"
