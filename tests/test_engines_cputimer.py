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
from tests.apps.workloads import burn, endpoints_app, serve, streamed_app, summary
from tests.servers import (
    ServerProcess,
    free_port,
    gunicorn_argv,
    http_get,
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
    # pbkdf2 releases the GIL: still CPU, charged to the Python function that called it.
    assert hashed["functions"].get("hash_it", 0.0) >= 0.8 * hashed["stack_cpu"]
    assert waited["stack_cpu"] <= 0.2 * waited["wall"]
    assert waited["off_cpu_wall"] == pytest.approx(waited["wall"] - waited["cpu"], rel=1e-6)
    # wsgiprof's own code never shows.
    for endpoint in (burned, hashed, waited):
        assert not any("/wsgiprof/" in file for file in endpoint["files"])
    # About 1.5 s of CPU: the samples' estimate is the measured CPU within 5 sd of a Poisson
    # count at the kernel's tick (4 ms at HZ=250: each sample carries about 4 expirations).
    measured = burned["cpu"] + hashed["cpu"] + waited["cpu"]
    sampled = burned["stack_cpu"] + hashed["stack_cpu"] + waited["stack_cpu"]
    tick = 0.004
    assert abs(sampled - measured) <= 5 * math.sqrt(measured / tick) * tick, (sampled, measured)


def split_share(functions: dict[str, float], truth: dict[str, float]) -> tuple[float, float, float]:
    """The profile's share of ``first``, the true share, and 4 binomial sd at the tick."""
    true_share = truth["first"] / (truth["first"] + truth["second"])
    share = functions["first"] / (functions["first"] + functions["second"])
    samples = (truth["first"] + truth["second"]) / 0.004
    bound = 4 * math.sqrt(true_share * (1 - true_share) / samples)
    print(f"first {share:.3f} against {true_share:.3f} (4 sd {bound:.3f})")
    return share, true_share, bound


def test_the_split_between_two_functions_in_process() -> None:
    def work() -> bytes:
        middleware = profiled(split.split_app)
        serve(middleware, ["/split"], threads=4, rounds=150)
        middleware.close()
        functions = summary(middleware)["GET /split"]["functions"]
        return json.dumps({"truth": split.truth(), "functions": functions}).encode()

    # In a child: the split app's truth is per process.
    code, output = run_forked(work, timeout=180)
    assert code == 0, output.decode(errors="replace")
    result = json.loads(output)
    share, true_share, bound = split_share(result["functions"], result["truth"])
    # 6 s of CPU, about 1,500 ticks: 4 sd are 4.7 points; the engine issue asks for 5.
    assert abs(share - true_share) <= min(bound, 0.05)


def test_cpu_spent_while_the_server_iterates_the_body_is_the_endpoints() -> None:
    middleware = profiled(streamed_app)
    serve(middleware, ["/stream"], threads=2, rounds=40)
    middleware.close()
    stream = summary(middleware)["GET /stream"]
    # 0.8 s of CPU, all in the body's iteration.
    assert stream["functions"].get("streamed_app.<locals>.chunks", 0.0) >= 0.8 * stream["cpu"]
    assert stream["functions"].get(OUTSIDE_APP.function, 0.0) <= 0.1 * stream["cpu"]


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


def test_a_request_shorter_than_the_tick_is_sampled_in_proportion() -> None:
    """Requests of 0.5 ms of CPU, an eighth of a tick: their samples still add up to their CPU
    (the timer runs on between requests, so every tick is as likely to land in one)."""
    engine = CpuTimerEngine(interval=INTERVAL)
    measured = estimated = 0.0
    try:
        for _ in range(3000):
            active = engine.start()
            active.run(burn, 0.0005)
            capture = active.stop()
            assert capture is not None
            measured += capture.cpu
            estimated += sum(
                w.cpu for stack, w in capture.stacks.items() if stack != (OUTSIDE_APP,)
            )
    finally:
        engine.close()
    # About 1.5 s of requests, 375 ticks: 5 sd of a Poisson count are 26% of it. Between the
    # requests the loop itself burns CPU, whose ticks are not the requests'.
    assert abs(estimated - measured) <= 5 * math.sqrt(measured / 0.004) * 0.004, (
        estimated,
        measured,
    )


# -- real threaded servers ---------------------------------------------------------------------

SPLIT_TOKEN = "split-token-1234"
SPLIT_APP = "tests.apps.split:app"


def _split_env(store: Path) -> dict[str, str]:
    return {
        "WSGIPROF_ENABLED": "1",
        "WSGIPROF_TOKEN": SPLIT_TOKEN,
        "WSGIPROF_ENGINE": "cputimer",
        "WSGIPROF_STORE": f"sqlite:///{store}",
        "WSGIPROF_FLUSH_INTERVAL": "0.2",
    }


def _split_cpu(url: str) -> tuple[float, float, int]:
    """CPU of /split's stacks in ``first`` and in ``second``, and its requests."""
    auth = {"Authorization": f"Bearer {SPLIT_TOKEN}"}
    status, body = http_get(url + "/_wsgiprof/api/summary", auth)
    assert status == 200, body
    for row in json.loads(body)["endpoints"]:
        if row["name"] == "GET /split":
            totals = {f["name"]: f["total_cpu_seconds"] for f in row["top_functions"]}
            return totals.get("first", 0.0), totals.get("second", 0.0), row["requests"]
    return 0.0, 0.0, 0


def _check_split(srv: ServerProcess, requests: int) -> None:
    statuses = load(srv.url + "/split", requests, 4)
    assert set(statuses) == {200}
    deadline = time.monotonic() + 60
    while True:
        first, second, seen = _split_cpu(srv.url)
        if seen >= requests:
            break
        assert time.monotonic() < deadline, f"only {seen} of {requests} requests after 60 s"
        time.sleep(0.1)
    status, body = http_get(srv.url + "/truth")
    assert status == 200
    truth = json.loads(body)
    share, true_share, bound = split_share({"first": first, "second": second}, truth)
    assert abs(share - true_share) <= min(bound, 0.05)
    srv.stop()
    assert srv.proc is not None
    logs = srv.logs()
    srv.log_path.unlink()
    assert srv.proc.returncode == 0, logs
    assert "SIGSEGV" not in logs
    assert "Segmentation" not in logs


@pytest.mark.server
def test_a_gunicorn_gthread_worker_gets_the_split_within_5_points(
    server_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    port = free_port()
    argv = gunicorn_argv(
        port, SPLIT_APP, "--workers=1", "--worker-class=gthread", "--threads=4", "--log-level=info"
    )
    srv = server_process(
        argv,
        port=port,
        env=_split_env(tmp_path / "split.sqlite3"),
        ready_path="/_wsgiprof/api/summary",
        keep_log=True,
    )
    _check_split(srv, 600)


@pytest.mark.server
@pytest.mark.parametrize("lazy", [True, False], ids=["lazy-apps", "preloaded"])
def test_uwsgi_threads_get_the_split_within_5_points(
    server_process: Callable[..., ServerProcess], tmp_path: Path, lazy: bool
) -> None:
    port = free_port()
    argv = uwsgi_argv(
        port, SPLIT_APP, "--processes=1", "--threads=4", *(["--lazy-apps"] if lazy else [])
    )
    srv = server_process(
        argv,
        port=port,
        env=_split_env(tmp_path / "split.sqlite3"),
        ready_path="/_wsgiprof/api/summary",
        keep_log=True,
    )
    _check_split(srv, 600)
