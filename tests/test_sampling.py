"""The per-request profiling decision (wsgiprof.sampling.Sampler)."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

from wsgiprof.sampling import Sampler

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

pytestmark = pytest.mark.filterwarnings("error::werkzeug.middleware.lint.WSGIWarning")

TOKEN = "s3cret-token"
FORCED = {"HTTP_X_WSGIPROF": "1", "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def _environ(**extra: str) -> dict[str, str]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/items", **extra}


def _no_random() -> float:
    raise AssertionError("random() must not be called")


def test_rate_zero_never_profiles_and_draws_no_random_number() -> None:
    sampler = Sampler(0.0, random=_no_random)
    assert not any(sampler.decide(_environ()) for _ in range(100))


def test_rate_one_always_profiles_and_draws_no_random_number() -> None:
    sampler = Sampler(1.0, random=_no_random)
    assert all(sampler.decide(_environ()) for _ in range(100))


def test_fraction_profiled_matches_the_rate() -> None:
    n, rate = 10_000, 0.2
    sampler = Sampler(rate, random=random.Random(1234).random)
    profiled = sum(sampler.decide(_environ()) for _ in range(n))
    assert abs(profiled - n * rate) < 4 * math.sqrt(n * rate * (1 - rate))


def test_default_random_source_is_used_when_none_is_given() -> None:
    random.seed(99)
    profiled = sum(Sampler(0.5).decide(_environ()) for _ in range(1_000))
    assert 400 < profiled < 600


@pytest.mark.parametrize("rate", [-0.01, 1.01, math.nan, math.inf, True, "0.5"])
def test_rate_outside_zero_to_one_is_rejected(rate: object) -> None:
    with pytest.raises(ValueError, match="sample rate"):
        Sampler(rate)  # type: ignore[arg-type]


def test_header_with_valid_token_forces_a_profile() -> None:
    sampler = Sampler(0.0, token=TOKEN, random=_no_random)
    assert sampler.decide(_environ(**FORCED))


def test_header_without_token_is_ignored() -> None:
    sampler = Sampler(0.0, token=TOKEN)
    assert not sampler.decide(_environ(HTTP_X_WSGIPROF="1"))


def test_header_with_wrong_token_is_ignored() -> None:
    sampler = Sampler(0.0, token=TOKEN)
    environ = _environ(HTTP_X_WSGIPROF="1", HTTP_AUTHORIZATION="Bearer wrong-token")
    assert not sampler.decide(environ)


@pytest.mark.parametrize("value", ["0", "true", "yes", ""])
def test_header_values_other_than_one_do_not_force(value: str) -> None:
    sampler = Sampler(0.0, token=TOKEN)
    assert not sampler.decide(_environ(**{**FORCED, "HTTP_X_WSGIPROF": value}))


def test_without_a_configured_token_nothing_can_force_a_profile() -> None:
    sampler = Sampler(0.0, token=None)
    assert not sampler.decide(_environ(**FORCED))


def test_ignored_header_falls_back_to_normal_sampling() -> None:
    sampler = Sampler(1.0, token=TOKEN)
    assert sampler.decide(_environ(HTTP_X_WSGIPROF="1", HTTP_AUTHORIZATION="Bearer wrong-token"))


def test_forced_header_wins_over_the_predicate() -> None:
    sampler = Sampler(0.0, predicate=lambda environ: False, token=TOKEN)
    assert sampler.decide(_environ(**FORCED))


def test_predicate_decides_instead_of_the_rate() -> None:
    sampler = Sampler(
        1.0, predicate=lambda environ: environ["PATH_INFO"] == "/slow", random=_no_random
    )
    assert sampler.decide(_environ(PATH_INFO="/slow"))
    assert not sampler.decide(_environ(PATH_INFO="/fast"))


def test_predicate_error_means_no_profile_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(environ: WSGIEnvironment) -> bool:
        raise KeyError("HTTP_X_MISSING")

    sampler = Sampler(1.0, predicate=broken)
    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        assert not sampler.decide(_environ())
        assert not sampler.decide(_environ())
    assert len(caplog.records) == 1
    assert caplog.records[0].name == "wsgiprof"
    assert caplog.records[0].exc_info is not None


def test_decisions_on_requests_from_a_real_client() -> None:
    sampler = Sampler(0.0, token=TOKEN)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        decision = "yes" if sampler.decide(environ) else "no"
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Profiled", decision)])
        return [b""]

    client = Client(LintMiddleware(app))
    forced = {"X-Wsgiprof": "1", "Authorization": f"Bearer {TOKEN}"}
    with client.get("/", headers=forced) as response:
        assert response.headers["X-Profiled"] == "yes"
    with client.get("/", headers={"X-Wsgiprof": "1"}) as response:
        assert response.headers["X-Profiled"] == "no"
