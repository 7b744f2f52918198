"""Which stages a worker runs, and how a missing or unknown stage is reported (pure)."""

import pytest

from services.scraper import worker
from services.scraper.stages import embed, fetch, index


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


def test_the_default_runs_every_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = worker.resolve_stages(None)
    assert list(everything) == ["fetch", "embed", "index", "feeds", "crawls", "scheduler"]
    assert everything["embed"] is embed.run
    monkeypatch.setitem(worker.STAGES, "feeds", "services.scraper.no_such_feed_stage")
    with pytest.raises(worker.WorkerError, match="stage 'feeds' is not available"):
        worker.resolve_stages("fetch,feeds")


def test_a_module_without_an_entry_point_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(worker.STAGES, "items", "services.scraper.items")
    with pytest.raises(worker.WorkerError, match=r"has no run\(ctx, stop\) entry point"):
        worker.load_stage("items")
