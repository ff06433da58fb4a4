"""The request ledger of deferred engines, driven by a hand-moved clock."""

from __future__ import annotations

from wsgiprof.engines.ledger import RequestLedger
from wsgiprof.model import Frame, Stack, Weight

WORK: Stack = (Frame("work", "/srv/app.py", 3),)
HASH: Stack = (Frame("work", "/srv/app.py", 3), Frame("hash", "/srv/app.py", 9))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cpu(seconds: float) -> Weight:
    return Weight(1, seconds, seconds)


def test_samples_wait_for_the_name_then_go_to_it() -> None:
    ledger = RequestLedger(keep=30.0, clock=Clock())
    ledger.begin(1)
    assert ledger.add([(1, WORK, cpu(0.01)), (1, WORK, cpu(0.02))]) == {}
    ledger.end(1)
    assert ledger.add([(1, HASH, cpu(0.03))]) == {}
    ready = ledger.name(1, "GET /a")
    assert {stack: w.cpu for stack, w in ready["GET /a"].items()} == {WORK: 0.03, HASH: 0.03}
    late = ledger.add([(1, HASH, cpu(0.04))])
    assert late == {"GET /a": {HASH: cpu(0.04)}}
    assert ledger.lost_cpu == 0.0


def test_samples_of_several_requests_are_grouped_by_endpoint() -> None:
    ledger = RequestLedger(keep=30.0, clock=Clock())
    for request, endpoint in ((1, "GET /a"), (2, "GET /b"), (3, "GET /a")):
        ledger.begin(request)
        ledger.end(request)
        ledger.name(request, endpoint)
    ready = ledger.add([(1, WORK, cpu(0.01)), (2, WORK, cpu(0.02)), (3, WORK, cpu(0.04))])
    assert {name: table[WORK].cpu for name, table in ready.items()} == {
        "GET /a": 0.05,
        "GET /b": 0.02,
    }
    assert ready["GET /a"][WORK].samples == 2


def test_a_named_request_is_forgotten_after_keep_seconds() -> None:
    clock = Clock()
    ledger = RequestLedger(keep=30.0, clock=clock)
    ledger.begin(1)
    ledger.end(1)
    clock.now += 20
    ledger.name(1, "GET /a")
    clock.now += 29  # 49 s after the end, 29 after the name: still known
    assert ledger.add([(1, WORK, cpu(0.01))]) == {"GET /a": {WORK: cpu(0.01)}}
    clock.now += 1
    assert ledger.add([(1, WORK, cpu(0.02))]) == {}
    assert ledger.lost_cpu == 0.02
    assert len(ledger) == 0


def test_a_request_never_named_loses_its_samples() -> None:
    clock = Clock()
    ledger = RequestLedger(keep=30.0, clock=clock)
    ledger.begin(1)
    ledger.add([(1, WORK, cpu(0.25))])
    ledger.end(1)
    clock.now += 30
    assert ledger.add([]) == {}
    assert ledger.lost_cpu == 0.25
    assert ledger.name(1, "GET /late") == {}
    assert len(ledger) == 0


def test_a_running_request_keeps_its_samples_however_long_it_runs() -> None:
    clock = Clock()
    ledger = RequestLedger(keep=30.0, clock=clock)
    ledger.begin(1)
    ledger.add([(1, WORK, cpu(0.1))])
    clock.now += 3600
    ledger.add([(1, WORK, cpu(0.1))])
    ledger.end(1)
    ready = ledger.name(1, "GET /stream")
    assert ready["GET /stream"][WORK].cpu == 0.2


def test_dropped_and_unknown_requests_count_as_lost() -> None:
    ledger = RequestLedger(keep=30.0, clock=Clock())
    ledger.begin(1)
    ledger.add([(1, WORK, cpu(0.5))])
    ledger.drop(1)
    assert ledger.add([(1, WORK, cpu(0.25)), (99, WORK, cpu(0.125))]) == {}
    assert ledger.lost_cpu == 0.875
    assert ledger.name(1, "GET /a") == {}
