"""Catalog images/s through the real ingest path vs the seed's naive per-image loop, same images.

    bench/ingest [--quick] [--items N] [--views multi-crop,whole]

For each embedder view mode (VS_EMBEDDER_VIEWS: the default multi-crop = 6 backbone runs per image,
and whole = 1):

- naive: one process decodes each file with PIL, preprocesses it, runs the embedder's ONNX session
  at batch 1 (once per view) and adds the vector to a FAISS flat index, one image at a time;
- stack: a throwaway stack (services.devstack.ephemeral) imports a CSV feed of the same images
  (served from the local dataset files by the gateway's /media/, as the demo import does) with
  POST /v1/imports, timed from the POST until the job is completed. A small import of other
  products runs first, so connection set-up and first-call costs are not in the number.

CPU seconds per process show where the time goes. Writes bench/results/ingest.json.
Targets (issue 7): >= 150 images/s from local files on 2 cores and >= 10x the naive loop.
"""

import argparse
import sys
from contextlib import nullcontext
from typing import Any

import httpx

from bench.perfkit import RESULTS, bench_lock, render_table, write_json
from bench.perfkit.ingest_naive import SeedModel, backbone_ceiling, naive_loop, resolved_model, service_model
from bench.perfkit.ingest_stack import fashion_rows, local_path, measured_import, to_csv
from services.devstack.config import StackSettings
from services.devstack.ephemeral import environment, ephemeral_stack
from services.embedder.views import ViewMode

TARGET_ITEMS_PER_S = 150.0
TARGET_SPEEDUP = 10.0
WARMUP_ITEMS = 64


def run_naive(settings: StackSettings, items: int, views: ViewMode) -> dict[str, Any]:
    rows = fashion_rows(settings.datasets_dir, settings.gateway_url, items)
    seed = SeedModel(resolved_model(settings.models_dir))
    result = naive_loop(seed, [local_path(r, settings.datasets_dir) for r in rows], views)
    result["backbone"] = backbone_ceiling(service_model(settings.models_dir), views)
    return result


def run_stack(items: int, views: ViewMode) -> dict[str, Any]:
    with environment({"VS_EMBEDDER_VIEWS": views}), ephemeral_stack() as stack:
        s = stack.settings
        rows = fashion_rows(s.datasets_dir, s.gateway_url, items + WARMUP_ITEMS)
        with httpx.Client(base_url=s.gateway_url, timeout=30) as client:
            measured_import(stack, client, to_csv(rows[items:]), "warmup.csv")
            return measured_import(stack, client, to_csv(rows[:items]), f"bench-{views}.csv")


def measure(items: int, modes: list[ViewMode]) -> dict[str, dict[str, Any]]:
    settings = StackSettings()
    results: dict[str, dict[str, Any]] = {}
    for views in modes:
        naive = run_naive(settings, items, views)
        stack = run_stack(items, views)
        stack["speedup_vs_naive"] = round(stack["items_per_s"] / naive["items_per_s"], 2)
        results[views] = {"naive": naive, "stack": stack}
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for views, pair in results.items():
        for path, r in pair.items():
            cpu = ", ".join(f"{n} {v}" for n, v in r["cpu_s_per_item_ms"].items())
            speedup = r.get("speedup_vs_naive", 1.0)
            rows.append(
                [f"{path} ({views})", r["items"], r["seconds"], r["items_per_s"], speedup, r["cpu_busy"], cpu]
            )
    headers = ["ingest path (views)", "images", "seconds", "images/s", "vs naive", "cpu busy", "cpu ms/image"]
    return render_table(headers, rows, title="catalog ingest from local files")


def ceiling_table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        [views, b["views_per_image"], b["wall_ms_per_view"], b["cpu_ms_per_view"], b["max_items_per_s"]]
        for views, pair in results.items()
        for b in [pair["naive"]["backbone"]]
    ]
    headers = ["backbone alone, batch 32", "views/image", "wall ms/view", "cpu ms/view", "max images/s"]
    title = "the model's own ceiling: the embedder's model runner in-process, nothing else running"
    return render_table(headers, rows, title=title)


def verdict(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for views, pair in results.items():
        rate, speedup = pair["stack"]["items_per_s"], pair["stack"]["speedup_vs_naive"]
        lines.append(
            f"{views}: {rate:.0f} images/s = {rate / TARGET_ITEMS_PER_S:.0%} of the {TARGET_ITEMS_PER_S:.0f}/s "
            f"target; {speedup:.1f}x the naive loop = {speedup / TARGET_SPEEDUP:.0%} of the "
            f"{TARGET_SPEEDUP:.0f}x target"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="200 images, no bench lock, no JSON (development)"
    )
    parser.add_argument("--items", type=int, default=0, help="images per run (default 1000, quick 200)")
    parser.add_argument("--views", default="multi-crop,whole", help="embedder view modes to measure")
    args = parser.parse_args(argv)
    items = args.items or (200 if args.quick else 1000)
    modes: list[ViewMode] = [m for m in ("multi-crop", "whole") if m in args.views.split(",")]
    with nullcontext() if args.quick else bench_lock():
        results = measure(items, modes)
    print(table(results))
    print(ceiling_table(results))
    print("\n".join(verdict(results)))
    if not args.quick:  # quick numbers are for development, not for the record
        targets = {"items_per_s": TARGET_ITEMS_PER_S, "speedup_vs_naive": TARGET_SPEEDUP}
        out = write_json(RESULTS / "ingest.json", {"items": items, "targets": targets, "results": results})
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
