"""Which stages a worker runs, and how a missing or unknown stage is reported (pure)."""

import pytest

from services.scraper import worker
from services.scraper.stages import embed, fetch, index


@pytest.fixture
def missing_feeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without the feed stage module."""
    stages = {**worker.STAGES, "feeds": "services.scraper.no_such_feed_stage"}
    monkeypatch.setattr(worker, "STAGES", stages)
    monkeypatch.setitem(worker.OPTIONAL_STAGES, "feeds", stages["feeds"])


def test_named_stages_are_loaded_in_order_without_duplicates() -> None:
    stages = worker.resolve_stages(" index,fetch ,index")
    assert list(stages) == ["index", "fetch"]
    assert stages["index"] is index.run
    assert stages["fetch"] is fetch.run


def test_unknown_or_empty_stage_lists_are_refused() -> None:
    with pytest.raises(worker.WorkerError, match="unknown stage 'fetcher'; stages are fetch, embed"):
        worker.resolve_stages("fetcher")
    with pytest.raises(worker.WorkerError, match="names no stage"):
        worker.resolve_stages(" , ")


@pytest.mark.usefixtures("missing_feeds")
def test_a_missing_stage_module_fails_only_when_that_stage_is_requested() -> None:
    with pytest.raises(worker.WorkerError, match="stage 'feeds' is not available"):
        worker.resolve_stages("fetch,feeds")
    everything = worker.resolve_stages(None)  # the default runs what this build has
    assert "feeds" not in everything
    assert everything["embed"] is embed.run
    assert {"fetch", "index"} <= set(everything)


def test_a_module_without_an_entry_point_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(worker.STAGES, "items", "services.scraper.items")
    with pytest.raises(worker.WorkerError, match=r"has no run\(ctx, stop\) entry point"):
        worker.load_stage("items")
