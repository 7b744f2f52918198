"""Turn per-dataset, per-pipeline results into a plain-text table and a JSON document.

Rendering returns strings and never prints, so the CLI decides where output goes and the layout
can be tested. Pipelines are compared against the one named "baseline", and per category the
"baseline" and "default" pipelines are shown side by side, because that is the comparison a
change to the default pipeline has to justify.
"""

from dataclasses import dataclass
from typing import Any

BASELINE = "baseline"
DEFAULT = "default"
METRIC_KEYS = ("recall@1", "recall@5", "recall@10", "map@10", "mrr")
DATASET_KEYS = ("manifest", "name", "queries", "catalog_products")
COLUMNS = ("R@1", "R@5", "R@10", "mAP@10", "MRR", "median ms", "Δ R@1 vs baseline")


@dataclass
class PipelineResult:
    """One pipeline's scores on one dataset; metrics are fractions as returned by summarise()."""

    name: str
    metrics: dict[str, float]
    per_category: dict[str, dict[str, float | int]]
    median_query_ms: float
    queries: int
    index_seconds: float


@dataclass
class DatasetResult:
    """All pipelines measured on one manifest."""

    manifest: str
    name: str
    queries: int
    catalog_products: int
    pipelines: list[PipelineResult]


def render_table(results: list[DatasetResult]) -> str:
    """One block per dataset: a metrics table per pipeline, then per-category R@1."""
    return "\n\n".join(_render_dataset(result) for result in results) + "\n"


def _render_dataset(result: DatasetResult) -> str:
    """Header line, aligned metrics table and the per-category comparison for one dataset."""
    title = f"{result.name}  ({result.manifest}; {result.queries} queries, {result.catalog_products} catalog products)"
    rows = [["pipeline", *COLUMNS]] + [_pipeline_cells(p, _find(result, BASELINE)) for p in result.pipelines]
    blocks = [title, _align(rows)]
    categories = _category_table(result)
    if categories:
        blocks += ["", categories]
    return "\n".join(blocks)


def _pipeline_cells(pipeline: PipelineResult, baseline: PipelineResult | None) -> list[str]:
    """Metrics in percent with one decimal; the delta is in percentage points."""
    cells = [pipeline.name] + [_percent(_metric(pipeline, key)) for key in METRIC_KEYS]
    cells.append(f"{pipeline.median_query_ms:.1f}")
    cells.append(_delta(pipeline, baseline))
    return cells


def _delta(pipeline: PipelineResult, baseline: PipelineResult | None) -> str:
    """Signed R@1 difference in points; "-" for the baseline itself, n/a when there is no baseline."""
    if baseline is None:
        return "n/a"
    if pipeline is baseline:
        return "-"
    points = 100 * (_metric(pipeline, "recall@1") - _metric(baseline, "recall@1"))
    return f"{points:+.1f}"


def _category_table(result: DatasetResult) -> str:
    """Per-category R@1 of baseline and default, sorted by category; empty if neither ran."""
    shown = [p for p in (_find(result, BASELINE), _find(result, DEFAULT)) if p is not None]
    categories = sorted({c for p in shown for c in p.per_category})
    if not categories:
        return ""
    rows = [["category", "n", *(f"{p.name} R@1" for p in shown)]]
    for category in categories:
        rows.append([category, _queries(shown, category), *(_category_r1(p, category) for p in shown)])
    return _align(rows)


def _queries(pipelines: list[PipelineResult], category: str) -> str:
    """The query count of a category, taken from the first pipeline that scored it."""
    for pipeline in pipelines:
        if category in pipeline.per_category:
            return str(pipeline.per_category[category]["queries"])
    return "0"


def _category_r1(pipeline: PipelineResult, category: str) -> str:
    """R@1 of one category in percent, or n/a when the pipeline scored no query of it."""
    entry = pipeline.per_category.get(category)
    return "n/a" if entry is None else _percent(float(entry["recall@1"]))


def _align(rows: list[list[str]]) -> str:
    """Left-align the first column and right-align the numbers, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _find(result: DatasetResult, name: str) -> PipelineResult | None:
    """The pipeline called ``name`` in this dataset, if it was run."""
    return next((p for p in result.pipelines if p.name == name), None)


def _metric(pipeline: PipelineResult, key: str) -> float:
    """A summary metric, failing with the pipeline's name rather than a bare KeyError."""
    if key not in pipeline.metrics:
        raise ValueError(f"pipeline {pipeline.name!r} has no {key!r} metric")
    return pipeline.metrics[key]


def _percent(fraction: float) -> str:
    """A 0..1 fraction as a percentage with one decimal."""
    return f"{100 * fraction:.1f}"


def to_json(results: list[DatasetResult], extra: dict[str, Any]) -> dict[str, Any]:
    """The results document: each pipeline's name is a key of its dataset object, next to ``extra``."""
    if "datasets" in extra:
        raise ValueError("extra must not contain the key 'datasets'")
    return {"datasets": [_dataset_json(result) for result in results], **extra}


def _dataset_json(result: DatasetResult) -> dict[str, Any]:
    """Dataset facts plus one object per pipeline; clashing names would silently overwrite data."""
    document: dict[str, Any] = {
        "manifest": result.manifest,
        "name": result.name,
        "queries": result.queries,
        "catalog_products": result.catalog_products,
    }
    for pipeline in result.pipelines:
        if pipeline.name in document:
            raise ValueError(f"{result.name}: pipeline name {pipeline.name!r} is reserved or repeated")
        document[pipeline.name] = _pipeline_json(pipeline)
    return document


def _pipeline_json(pipeline: PipelineResult) -> dict[str, Any]:
    """Summary metrics (fractions), timings and the per-category recall@1 of one pipeline."""
    return {
        **{key: _metric(pipeline, key) for key in METRIC_KEYS},
        "median_query_ms": round(pipeline.median_query_ms, 2),
        "index_seconds": round(pipeline.index_seconds, 3),
        "queries": pipeline.queries,
        "per_category_recall@1": pipeline.per_category,
    }
