"""bench/tuning's summary: means over rounds, per-service CPU per query from cores busy and QPS."""

from bench.perfkit.tuning import _DEFAULTS, VARIANTS, summary, tables


def _row(qps: float, detector: float, embedder: float) -> dict[str, object]:
    return {
        "qps": qps,
        "cores_busy": {"detector": detector, "embedder": embedder},
        "stack_cpu_ms_per_query": 300.0,
        "stack_cpu_utilisation": 0.9,
        "latency_ms": {"p50": 1000.0},
    }


def test_summary_averages_rounds_and_derives_cpu_per_query() -> None:
    rows = [_row(5.0, 0.5, 1.0), _row(6.0, 0.6, 1.2)]
    assert summary(rows) == [5.5, "5.00 / 6.00", 300, 100, 200, 0.9, 1000]
    text = tables({"plan": {"concurrency": 8}, "rounds": {"defaults": rows}})
    assert "concurrency 8" in text
    assert "defaults" in text


def test_every_variant_only_sets_settings_the_restart_resets() -> None:
    for variant in VARIANTS.values():
        for service, env in variant.items():
            assert set(env) <= set(_DEFAULTS[service])
