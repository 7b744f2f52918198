"""A backend outage charges an item at most the attempt it was making, and pauses the stage."""

from types import SimpleNamespace
from typing import Any

import pytest

from services.scraper import outage as outage_module
from services.scraper.config import ScraperSettings
from services.scraper.stages import backend_outage
from services.scraper.stages.backend_outage import BackendOutage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    for module in (backend_outage, outage_module):  # the stage's waits and the outage's start
        monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=clock))
    return clock


def outage(**settings: Any) -> BackendOutage:
    config = ScraperSettings(
        redis_url="redis://unused:1", retry_base_s=0.5, outage_retry_max_s=5.0, **settings
    )
    return BackendOutage("index", config)


def test_only_calls_in_flight_when_the_outage_began_are_charged(clock: Clock) -> None:
    state = outage()
    in_flight = clock.now - 0.2
    first = state.failed("a", in_flight, "indexer_unavailable")
    second = state.failed("b", in_flight, "indexer_unavailable")  # in flight too, failed later
    assert first is not None
    assert second is not None
    assert (first.charged, second.charged) == (True, True)
    assert state.active
    clock.now += 1
    later = state.failed("c", clock.now - 0.01, "indexer_unavailable")  # started during the outage
    again = state.failed("a", clock.now - 0.01, "indexer_unavailable")
    assert later is not None
    assert again is not None
    assert (later.charged, again.charged) == (False, False)


def delays(state: BackendOutage, clock: Clock, failures: int, step_s: float) -> list[float]:
    """The retry delays ``failures`` failures of message "a" get, ``step_s`` apart."""
    found = []
    for _ in range(failures):
        wait = state.failed("a", clock.now, "down")
        assert wait is not None
        found.append(wait.delay_s)
        clock.now += step_s
    return found


def test_waiting_items_back_off_up_to_the_outage_cap_and_give_up_after_the_patience(clock: Clock) -> None:
    state = outage(outage_patience_s=60.0)
    assert delays(state, clock, 7, step_s=5) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    clock.now += 30  # 65 s since its first failure
    assert state.failed("a", clock.now, "down") is None
    assert state.waited_s("a") == pytest.approx(65.0)
    state.forget("a")
    fresh = state.failed("a", clock.now, "down")  # back from another worker: a new wait
    assert fresh is not None
    assert fresh.delay_s == 0.5


def test_the_outage_cap_never_exceeds_the_retry_cap(clock: Clock) -> None:
    state = outage(retry_max_s=2.0)
    assert delays(state, clock, 4, step_s=0) == [0.5, 1.0, 2.0, 2.0]


def test_the_stage_reopens_only_for_a_call_started_after_the_outage_began(clock: Clock) -> None:
    state = outage()
    state.failed("a", clock.now - 1, "down")
    state.answered(clock.now - 0.5)  # an answer to a call sent before the backend went down
    assert state.active
    clock.now += 3
    state.answered(clock.now - 0.1)
    assert not state.active
    state.failed("a", clock.now, "down")
    state.answered()  # nothing left waiting
    assert not state.active
