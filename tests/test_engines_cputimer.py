"""The CPU-timer engine: hook-free samples on each thread's CPU clock, charged per request.

In process through werkzeug's Client (several threads), and through real threaded servers
(gunicorn gthread, uWSGI threads) for the split the engine issue asks for: within 5 points.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.apps import split
from tests.apps.workloads import (
    SPLIT_APP,
    burn,
    endpoints_app,
    serve,
    share_of_first,
    split_env,
    split_reading,
    split_truth,
    stop_cleanly,
    streamed_app,
    summary,
)
from tests.servers import (
    ServerProcess,
    free_port,
    gunicorn_argv,
    load,
    run_forked,
    uwsgi_argv,
)
from wsgiprof import Config, ProfilerMiddleware, _cpusampler
from wsgiprof.engines import EngineUnavailableError, create_engine
from wsgiprof.engines.cputimer import CpuTimerEngine, unavailable_reason
from wsgiprof.model import OUTSIDE_APP

if TYPE_CHECKING:
    pass

INTERVAL = 0.001
#: The kernel's scheduler tick (HZ=250): a signal comes at each tick that finds the thread running.
TICK = 0.004


@pytest.fixture(autouse=True)
def no_timers_left() -> Iterator[None]:
    yield
    assert _cpusampler.timers() == 0


def profiled(app: Any) -> ProfilerMiddleware:
    config = Config(
        enabled=True, engine="cputimer", sample_rate=1.0, store="memory", interval=INTERVAL
    )
    return ProfilerMiddleware(app, config=config)


def test_the_engine_is_built_where_it_can_run() -> None:
    assert unavailable_reason() is None
    engine = create_engine(Config(enabled=True, engine="cputimer", interval=0.002))
    assert isinstance(engine, CpuTimerEngine)
    assert engine.interval == 0.002
    engine.close()


def test_each_endpoint_gets_its_own_cpu_and_waits_are_not_cpu() -> None:
    middleware = profiled(endpoints_app)
    serve(middleware, ["/burn", "/hash", "/wait"], threads=4, rounds=60)
    middleware.close()
    endpoints = summary(middleware)
    burned, hashed, waited = endpoints["GET /burn"], endpoints["GET /hash"], endpoints["GET /wait"]
    assert [e["sampled"] for e in (burned, hashed, waited)] == [240, 240, 240]
    assert "hash_it" not in burned["functions"]
    assert "burn" in burned["functions"]
    assert "burn" not in hashed["functions"]
    # pbkdf2 releases the GIL: still CPU, charged to the Python function that called it. (Of
    # the CPU sampled inside the application: with every core busy, more of it was sampled in
    # the middleware around it, 20% once; docs/hook-free-engine.md.)
    outside = hashed["functions"].get(OUTSIDE_APP.function, 0.0)
    assert hashed["functions"].get("hash_it", 0.0) >= 0.8 * (hashed["stack_cpu"] - outside)
    assert waited["stack_cpu"] <= 0.2 * waited["wall"]
    assert waited["off_cpu_wall"] == pytest.approx(waited["wall"] - waited["cpu"], rel=1e-6)
    # wsgiprof's own code never shows.
    for endpoint in (burned, hashed, waited):
        assert not any("/wsgiprof/" in file for file in endpoint["files"])
    # About 1.5 s of CPU: the samples' estimate is the measured CPU within 5 sd of a Poisson
    # count of the samples taken (one per tick that found a thread running: about 380 on an
    # idle machine, fewer when every core is busy).
    measured = burned["cpu"] + hashed["cpu"] + waited["cpu"]
    sampled = burned["stack_cpu"] + hashed["stack_cpu"] + waited["stack_cpu"]
    samples = burned["samples"] + hashed["samples"] + waited["samples"]
    assert samples > 0
    assert abs(sampled - measured) <= 5 * measured / math.sqrt(samples), (sampled, measured)


def test_the_split_between_two_functions_in_process() -> None:
    def work() -> bytes:
        middleware = profiled(split.split_app)
        serve(middleware, ["/split"], threads=4, rounds=150)
        middleware.close()
        endpoint = summary(middleware)["GET /split"]
        return json.dumps({"truth": split.truth(), "endpoint": endpoint}).encode()

    # In a child: the split app's truth is per process.
    code, output = run_forked(work, timeout=180)
    assert code == 0, output.decode(errors="replace")
    result = json.loads(output)
    functions, counts = result["endpoint"]["functions"], result["endpoint"]["function_samples"]
    samples = counts["first"] + counts["second"]
    share, true_share, bound = share_of_first(
        functions["first"], functions["second"], result["truth"], samples
    )
    # 6 s of CPU, about 1,500 ticks on an idle machine: 4 sd are 4.7 points; the engine issue
    # asks for 5.
    assert abs(share - true_share) <= min(bound, 0.05)


def test_cpu_spent_while_the_server_iterates_the_body_is_the_endpoints() -> None:
    middleware = profiled(streamed_app)
    serve(middleware, ["/stream"], threads=2, rounds=40)
    middleware.close()
    stream = summary(middleware)["GET /stream"]
    # 0.8 s of CPU, all in the body's iteration: were it not run under the request's frame, its
    # samples would all be outside the application. (With every core busy, up to a fifth of
    # the samples were taken in the middleware around the application: see the /hash check.)
    chunks = stream["functions"].get("streamed_app.<locals>.chunks", 0.0)
    assert chunks >= 0.5 * stream["stack_cpu"]
    assert chunks >= 2 * stream["functions"].get(OUTSIDE_APP.function, 0.0)


def test_one_profile_per_thread_and_none_for_a_stop_on_another_thread() -> None:
    engine = CpuTimerEngine(interval=INTERVAL)
    other = CpuTimerEngine(interval=INTERVAL)
    try:
        active = engine.start()
        with pytest.raises(EngineUnavailableError, match="already profiled"):
            other.start()
        stopped: list[Any] = []
        thread = threading.Thread(target=lambda: stopped.append(active.stop()))
        thread.start()
        thread.join()
        assert stopped == [None]
        assert active.stop() is None
        # The thread is free again; the abandoned samples are dropped.
        again = other.start()
        again.run(burn, 0.02)
        capture = again.stop()
        assert capture is not None
        assert capture.cpu >= 0.02
    finally:
        engine.close()
        other.close()


def test_timers_go_with_the_last_engine() -> None:
    first = CpuTimerEngine(interval=INTERVAL)
    second = CpuTimerEngine(interval=INTERVAL)
    for engine in (first, second):
        active = engine.start()
        active.run(burn, 0.005)
        assert active.stop() is not None
    assert _cpusampler.timers() == 1
    first.close()
    assert _cpusampler.timers() == 1
    second.close()
    second.close()


# -- real threaded servers ---------------------------------------------------------------------


def _check_split(
    server_process: Callable[..., ServerProcess], argv: list[str], port: int, store: Path
) -> None:
    """Serve 600 requests of the split app with ``argv``; its split within 5 points, then a
    clean exit."""
    srv = server_process(
        argv,
        port=port,
        env=split_env(store, "cputimer"),
        ready_path="/_wsgiprof/api/summary",
        keep_log=True,
    )
    requests = 600
    statuses = load(srv.url + "/split", requests, 4)
    assert set(statuses) == {200}
    deadline = time.monotonic() + 60
    while (reading := split_reading(srv.url)).requests < requests:
        assert time.monotonic() < deadline, f"only {reading.requests} of {requests} after 60 s"
        time.sleep(0.1)
    truth = split_truth(srv.url)
    # Samples as on an idle machine, one per tick (the summary does not count them).
    samples = (truth["first"] + truth["second"]) / TICK
    share, true_share, bound = share_of_first(reading.first, reading.second, truth, samples)
    assert abs(share - true_share) <= min(bound, 0.05)
    stop_cleanly(srv)


@pytest.mark.server
def test_a_gunicorn_gthread_worker_gets_the_split_within_5_points(
    server_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    port = free_port()
    argv = gunicorn_argv(
        port, SPLIT_APP, "--workers=1", "--worker-class=gthread", "--threads=4", "--log-level=info"
    )
    _check_split(server_process, argv, port, tmp_path / "split.sqlite3")


@pytest.mark.server
@pytest.mark.parametrize("lazy", [True, False], ids=["lazy-apps", "preloaded"])
def test_uwsgi_threads_get_the_split_within_5_points(
    server_process: Callable[..., ServerProcess], tmp_path: Path, lazy: bool
) -> None:
    port = free_port()
    argv = uwsgi_argv(
        port, SPLIT_APP, "--processes=1", "--threads=4", *(["--lazy-apps"] if lazy else [])
    )
    _check_split(server_process, argv, port, tmp_path / "split.sqlite3")
