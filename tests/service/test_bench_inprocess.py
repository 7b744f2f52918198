"""The in-process pipeline the latency and throughput benches compare the stack with.

Benches are not run by the test suite (they take minutes), so this keeps their shared set-up from
drifting away from the services' settings and model classes unnoticed.
"""

import pytest

from bench.perfkit.inprocess import bare_runs, load_models, prepare, search, temp_store
from bench.perfkit.stackload import query_photos
from bench.perfkit.throughput import compute_limit
from tests.paths import MODELS


@pytest.fixture(autouse=True)
def _models_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_MODELS_DIR", str(MODELS))
    monkeypatch.setenv("VS_EMBEDDER_VIEWS", "multi-crop")


def test_the_in_process_pipeline_and_the_bare_runs_work_on_a_real_photo() -> None:
    models = load_models(detector_threads=1, embedder_threads=1)
    (query,) = query_photos({"scenes": 1})
    with temp_store() as store:
        traced = search(models, store, query.data)
    assert traced.objects >= 2  # the whole photo plus at least one detected object
    assert traced.views == traced.objects * 6
    assert set(traced.ms) == {"decode", "detect", "embed", "search", "total"}

    bare = bare_runs(models, prepare(models, query.data))
    assert 0 < bare["detect"] < bare["total"]
    assert bare["cpu"] > 0

    limit = compute_limit(models, [query])
    assert limit["limit_qps"] == pytest.approx(limit["cores"] / limit["cores_busy_per_query_s"], rel=1e-2)
