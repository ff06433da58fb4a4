"""Scale: the dashboard with many endpoints of many distinct, deep stacks.

The test runs a reduced case so the suite stays quick. The full case of the issue (200 endpoints of
20,000 distinct stacks, depth 10-40, over a few hundred frames) is measured by running this file:

    .venv/bin/python -m tests.test_dashboard_scale [--browser]

which prints the server-side times (summary, overview page, flamegraph JSON) and, with
``--browser``, the time until a flamegraph page is interactive in headless Chromium.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import threading
import time
from typing import Any

from wsgiprof.config import Config
from wsgiprof.dashboard import Dashboard
from wsgiprof.dashboard.flame import flame_data
from wsgiprof.dashboard.pages import render_overview
from wsgiprof.model import EndpointProfile, Frame, Stack, Weight
from wsgiprof.stores.base import ProcessInfo, Snapshot
from wsgiprof.summary import SummaryCache, build_summary

TOKEN = "scale-test-token-0123"


def synthetic_snapshot(
    endpoints: int, stacks: int, *, seed: int = 7, totals: bool = True
) -> Snapshot:
    """``endpoints`` endpoints of ``stacks`` distinct stacks each, depth 10-40, drawn as random
    walks over a call graph of 400 functions (300 application, 100 library) plus an off-CPU
    ``sleep`` leaf. Every endpoint has its own root frame above a shared pool of walks.

    With ``totals`` each profile keeps its function totals, as profiles read from the memory
    store do (the aggregator computes them when it drains); without, the summary has to walk
    the stacks, as for profiles decoded from a shared store."""
    rng = random.Random(seed)
    frames = [
        Frame(f"mod{i % 37}.func_{i}", f"/srv/app/pkg{i % 11}/mod{i % 37}.py", 10 + i)
        for i in range(300)
    ]
    frames += [
        Frame(f"lib.call_{i}", f"/venv/lib/python3.11/site-packages/lib{i % 5}/core.py", i)
        for i in range(100)
    ]
    sleep = Frame("sleep", "<built-in>", 0, off_cpu=True)
    callees = {frame: rng.sample(frames, 4) for frame in frames}
    tails: set[Stack] = set()
    while len(tails) < stacks:
        walk = [rng.choice(frames)]
        for _ in range(rng.randint(9, 39) - 1):
            walk.append(rng.choice(callees[walk[-1]]))
        if rng.random() < 0.05:
            walk[-1] = sleep
        tails.add(tuple(walk))
    pool = []
    for tail in sorted(tails):
        wall = rng.random() * 0.002
        cpu = 0.0 if tail[-1].off_cpu else wall * rng.uniform(0.6, 1.0)
        pool.append((tail[1:], Weight(1, wall, cpu)))
    snapshot = Snapshot(window_start=1_764_230_400.0, window_end=1_764_230_460.0)
    for e in range(endpoints):
        profile = EndpointProfile(
            f"GET /endpoint/{e}/<int:item>", requests=4000, sampled=200, stack_cap=2**62
        )
        root = Frame(f"views.endpoint_{e}", "/srv/app/views.py", 100 + e)
        profile.stacks = {(root, *tail): weight for tail, weight in pool}
        profile.cpu = profile.total("cpu")
        profile.wall = profile.total("wall")
        if totals:
            profile.function_totals()
        for _ in range(200):
            profile.latency.add(rng.uniform(0.005, 0.5))
        snapshot.endpoints[profile.name] = profile
    snapshot.processes = [
        ProcessInfo(pid=1000 + i, host="web-1", cpu_percent=95.0, rss_bytes=2**27, threads=8)
        for i in range(4)
    ]
    return snapshot


def measure(endpoints: int, stacks: int) -> dict[str, Any]:
    """Server-side timings of one synthetic window, in seconds and bytes."""
    started = time.perf_counter()
    snapshot = synthetic_snapshot(endpoints, stacks)
    result: dict[str, Any] = {"generate_s": time.perf_counter() - started}
    host = {"cpu_percent": 97.0, "load": [7.5, 7.0, 6.0], "cores": 8, "memory_percent": 40.0}

    cache = SummaryCache()
    started = time.perf_counter()
    summary = build_summary(
        snapshot, engine="pyinstrument", sample_rate=0.05, top=1, function_totals=False,
        host=host, cache=cache,
    )  # fmt: skip
    page = render_overview(summary, "/_wsgiprof")
    result["overview_first_s"] = time.perf_counter() - started
    started = time.perf_counter()
    summary = build_summary(
        snapshot, engine="pyinstrument", sample_rate=0.05, top=1, function_totals=False,
        host=host, cache=cache,
    )  # fmt: skip
    render_overview(summary, "/_wsgiprof")
    result["overview_cached_s"] = time.perf_counter() - started
    for profile in snapshot.endpoints.values():
        profile.stacks = dict(profile.stacks)  # drops the kept totals: the stacks-walking path
    started = time.perf_counter()
    summary = build_summary(
        snapshot, engine="pyinstrument", sample_rate=0.05, top=1, function_totals=False,
        host=host,
    )  # fmt: skip
    render_overview(summary, "/_wsgiprof")
    result["overview_no_totals_s"] = time.perf_counter() - started
    for profile in snapshot.endpoints.values():
        profile.function_totals()
    result["overview_bytes"] = len(page.encode())
    result["overview_gzip_bytes"] = len(gzip.compress(page.encode()))

    started = time.perf_counter()
    full = build_summary(snapshot, engine="pyinstrument", sample_rate=0.05, top=10, host=host)
    result["api_summary_s"] = time.perf_counter() - started
    result["api_summary_bytes"] = len(json.dumps(full, separators=(",", ":")))

    profile = next(iter(snapshot.endpoints.values()))
    started = time.perf_counter()
    flame = flame_data([profile], name=profile.name)
    body = json.dumps(flame, separators=(",", ":")).encode()
    result["flame_s"] = time.perf_counter() - started
    result["flame_nodes"] = len(flame["nodes"]["parent"])
    result["flame_bytes"] = len(body)
    result["flame_gzip_bytes"] = len(gzip.compress(body, 6))
    started = time.perf_counter()
    flame_all = flame_data(snapshot.endpoints.values(), name="all", by_endpoint=True)
    body_all = json.dumps(flame_all, separators=(",", ":")).encode()
    result["flame_all_s"] = time.perf_counter() - started
    result["flame_all_bytes"] = len(body_all)
    result["flame_all_gzip_bytes"] = len(gzip.compress(body_all, 6))
    return result


def test_scale_reduced() -> None:
    """10 endpoints of 20,000 stacks: the flamegraph stays exact and compact."""
    snapshot = synthetic_snapshot(10, 20_000)
    profile = next(iter(snapshot.endpoints.values()))
    flame = flame_data([profile], name=profile.name)
    assert flame["stacks"] == 20_000
    assert flame["omitted_stacks"] == 0
    assert flame["totals"]["cpu"] == sum(round(w.cpu * 1e6) for w in profile.stacks.values())
    body = json.dumps(flame, separators=(",", ":")).encode()
    assert len(gzip.compress(body, 6)) < 3_000_000
    summary = build_summary(
        snapshot, engine="pyinstrument", sample_rate=0.05, top=1, function_totals=False
    )
    assert len(summary["endpoints"]) == 10
    assert all(e["top_functions"] for e in summary["endpoints"])
    page = render_overview(summary, "/_wsgiprof")
    assert page.count('<th scope="row" data-sort="GET /endpoint/') == 10


def browser_time_to_interactive(endpoints: int, stacks: int) -> dict[str, float]:
    """Serve a dashboard over a synthetic window and time pages in headless Chromium."""
    from playwright.sync_api import sync_playwright

    from tests.servers import ThreadedServer
    from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

    snapshot = synthetic_snapshot(endpoints, stacks)
    config = Config(enabled=True, token=TOKEN, sample_rate=0.05)
    dashboard = Dashboard(
        config, read=lambda: snapshot, reset=time.time, engine="pyinstrument", host=dict
    )
    profile = next(iter(snapshot.endpoints.values()))
    times: dict[str, float] = {}
    lock = threading.Lock()
    with ThreadedServer(dashboard) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            http_credentials={"username": "", "password": TOKEN},
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        url = f"{server.url}/_wsgiprof"
        for label, path, ready in (
            ("overview_first", "/", "#endpoints"),
            ("overview_again", "/", "#endpoints"),
            ("flame_first", f"/endpoints/{profile.id}", "#flame[data-ready='1']"),
            ("flame_again", f"/endpoints/{profile.id}", "#flame[data-ready='1']"),
        ):
            started = time.perf_counter()
            page.goto(url + path)
            page.wait_for_selector(ready, timeout=120_000)
            with lock:
                times[label + "_s"] = time.perf_counter() - started
        started = time.perf_counter()
        page.locator("input[name='mode'][value='wall']").check()
        page.wait_for_selector("#flame[data-mode='wall']")
        times["mode_switch_s"] = time.perf_counter() - started
        times["svg_elements"] = float(page.locator("#flame g.frame").count())
        started = time.perf_counter()
        page.locator("#flame g.frame rect").nth(3).click()
        page.wait_for_function("document.getElementById('flame').dataset.focus !== '-1'")
        times["zoom_s"] = time.perf_counter() - started
        browser.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--stacks", type=int, default=20_000)
    parser.add_argument("--browser", action="store_true", help="also time pages in Chromium")
    args = parser.parse_args(argv)
    for key, value in measure(args.endpoints, args.stacks).items():
        print(f"{key:24} {value:,.3f}" if isinstance(value, float) else f"{key:24} {value:,}")
    if args.browser:
        for key, value in browser_time_to_interactive(args.endpoints, args.stacks).items():
            print(f"browser {key:16} {value:,.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
