"""bench/quality MANIFEST [MANIFEST ...] [--json OUT]: retrieval quality, seed baseline vs default.

For each manifest (the common format of ../shared/datasets: catalog rows and query rows, a query's
correct matches are the catalog rows with its match_key; nothing else is read from the dataset),
every selected pipeline indexes the catalog and runs every scored query (role=query, split other
than train), through the real services. Prints a table and writes JSON.
"""

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.qualitykit.manifest import Dataset, ManifestError, Row, load_dataset, scorable
from bench.qualitykit.metrics import per_category_recall1, query_scores, relevant_counts, summarise
from bench.qualitykit.pipelines import DEFAULT_SELECTION, PIPELINES, Pipeline, select
from bench.qualitykit.report import DatasetResult, PipelineResult, render_table, to_json
from bench.qualitykit.scenes import make_scenes, render_scenes, run_scenes
from bench.qualitykit.stack import Indexed, Ranking, index_catalog, run_queries, running_stack

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("bench.quality")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    parser.add_argument(
        "--pipelines",
        default=",".join(DEFAULT_SELECTION),
        help=f"comma-separated, from: {', '.join(PIPELINES)} (default: %(default)s)",
    )
    parser.add_argument("--k", type=int, default=50, help="matches asked per query (R@10 needs >= 10)")
    parser.add_argument("--limit", type=int, default=0, help="score only this many queries, spread evenly")
    parser.add_argument(
        "--scenes", type=int, default=100, help="2x2 multi-product scenes searched with the default pipeline"
    )
    args = parser.parse_args(argv)
    if not 10 <= args.k <= 100:
        parser.error("--k must be between 10 and 100")
    return args


def spread(rows: list[Row], limit: int) -> list[Row]:
    """At most ``limit`` rows taken evenly across the list (manifests are often sorted by class)."""
    if limit <= 0 or limit >= len(rows):
        return rows
    return [rows[i * len(rows) // limit] for i in range(limit)]


def score(
    name: str, rankings: list[Ranking], queries: list[Row], dataset: Dataset, indexed: Indexed
) -> PipelineResult:
    relevant = relevant_counts(dataset.catalog)
    scores = [
        query_scores(r.keys, q.match_key, relevant.get(q.match_key, 0))
        for r, q in zip(rankings, queries, strict=True)
    ]
    return PipelineResult(
        name=name,
        metrics=summarise(scores),
        per_category=per_category_recall1([q.category for q in queries], scores),
        median_query_ms=statistics.median(r.ms for r in rankings),
        queries=len(queries),
        index_seconds=indexed.seconds,
    )


def measure(
    dataset: Dataset, pipelines: list[Pipeline], args: argparse.Namespace, report: dict[str, Any]
) -> DatasetResult:
    queries = spread(dataset.queries, args.limit)
    results: dict[str, PipelineResult] = {}
    groups: dict[tuple[tuple[str, str], ...], list[Pipeline]] = {}
    for pipeline in pipelines:
        groups.setdefault(pipeline.stack_key, []).append(pipeline)
    for group in groups.values():
        with running_stack(dict(group[0].env)) as client:
            indexed = index_catalog(client, dataset)
            log.info(
                "%s: indexed %d products in %.1fs (%d failed)",
                dataset.name,
                len(indexed.keys),
                indexed.seconds,
                len(indexed.errors),
            )
            for pipeline in group:
                started = time.perf_counter()
                rankings = run_queries(client, queries, pipeline, indexed.keys, args.k)
                failed = [r.error for r in rankings if r.error]
                log.info(
                    "%s/%s: %d queries in %.1fs (%d failed)",
                    dataset.name,
                    pipeline.name,
                    len(queries),
                    time.perf_counter() - started,
                    len(failed),
                )
                report["errors"][f"{dataset.name}/{pipeline.name}"] = {
                    "catalog": indexed.errors[:20],
                    "catalog_failed": len(indexed.errors),
                    "queries_failed": len(failed),
                    "query_errors": failed[:20],
                }
                results[pipeline.name] = score(pipeline.name, rankings, queries, dataset, indexed)
                if pipeline.name == "default" and args.scenes > 0:
                    scenes = make_scenes(dataset.queries, args.scenes)
                    if scenes:
                        report["scenes"][dataset.name] = run_scenes(client, scenes, indexed.keys, args.k)
    return DatasetResult(
        str(dataset.manifest),
        dataset.name,
        len(queries),
        len({r.product_id for r in dataset.catalog}),
        [results[p.name] for p in pipelines],
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        pipelines = select([n.strip() for n in args.pipelines.split(",") if n.strip()])
        datasets = [load_dataset(path) for path in args.manifests]
    except (ManifestError, ValueError) as exc:
        print(f"bench/quality: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"errors": {}, "scenes": {}}
    results = []
    for dataset in scorable(datasets, "bench/quality"):
        results.append(measure(dataset, pipelines, args, report))
    if not results:
        print("bench/quality: no manifest had a catalog and scored queries", file=sys.stderr)
        return 2
    print(render_table(results))
    if report["scenes"]:
        print(render_scenes(report["scenes"]))
    extra = {"mode": "stack", "k": args.k, "pipelines": {p.name: p.description for p in pipelines}, **report}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(to_json(results, extra), indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
