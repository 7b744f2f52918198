"""Scraper commands: load a catalog manifest or the demo catalog into a running stack, or run
an ingest worker."""

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from services.scraper import demo_feed, import_client
from services.scraper.config import ScraperSettings
from services.scraper.loader import load_items
from services.scraper.manifest import CatalogItem, read_catalog
from services.scraper.worker import STAGES
from services.scraper.worker import main as run_worker

log = logging.getLogger("visualsearch")

# The demo catalog (DATASETS.md): fashion catalog rows plus the grocery iconic photos.
DEMO_MANIFESTS = ("fashion_products/manifest.csv", "grocery_store/manifest.csv")


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    demo = sub.add_parser("load-demo", help="load the demo catalog from the shared datasets")
    demo.add_argument("--datasets", type=Path, required=True, help="the shared datasets folder")
    _common(demo)
    demo.set_defaults(handler=_load_demo)
    manifest = sub.add_parser("load-manifest", help="load the catalog rows of a manifest CSV")
    manifest.add_argument("manifest", type=Path)
    manifest.add_argument("--role", default="catalog", help="rows with this role (default: catalog)")
    manifest.add_argument("--media-root", type=Path, help="folder the gateway serves at /media/")
    _common(manifest)
    manifest.set_defaults(handler=_load_manifest)
    worker = sub.add_parser(
        "worker", help="run ingest pipeline stages until SIGTERM (settings: VS_SCRAPER_*)"
    )
    worker.add_argument(
        "--stages", help=f"comma-separated stages to run, of: {','.join(STAGES)} (default: all available)"
    )
    worker.add_argument("--name", help="consumer name, unique among running workers (default: host-pid)")
    worker.set_defaults(handler=_worker)
    import_client.add_command(sub)
    feed = sub.add_parser("demo-feed", help="write the demo catalog as a CSV feed for `visualsearch import`")
    feed.add_argument("--datasets", type=Path, required=True, help="the shared datasets folder")
    feed.add_argument(
        "--base-url", required=True, help="where the datasets folder is served (http://127.0.0.1:8080/media)"
    )
    feed.add_argument("--output", type=Path, help="the CSV file to write (default: standard output)")
    feed.set_defaults(handler=_demo_feed)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", help="gateway base URL (default: $VS_SCRAPER_GATEWAY_URL)")
    parser.add_argument("--concurrency", type=int, help="parallel uploads")
    parser.add_argument("--limit", type=int, help="load at most this many items")


def _settings(args: argparse.Namespace) -> ScraperSettings:
    overrides = {"gateway_url": args.gateway, "concurrency": args.concurrency}
    return ScraperSettings(**{k: v for k, v in overrides.items() if v is not None})


def _load_demo(args: argparse.Namespace) -> int:
    items: list[CatalogItem] = []
    for rel in DEMO_MANIFESTS:
        items += read_catalog(args.datasets / rel, media_root=args.datasets)
    return _run(items, args)


def _load_manifest(args: argparse.Namespace) -> int:
    return _run(list(read_catalog(args.manifest, media_root=args.media_root, role=args.role)), args)


def _run(items: list[CatalogItem], args: argparse.Namespace) -> int:
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        log.error("no catalog rows found")
        return 1
    started = time.perf_counter()
    report = asyncio.run(load_items(items, _settings(args), progress=True))
    seconds = time.perf_counter() - started
    summary = ", ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    log.info(
        "catalog: %d items in %.1fs (%.1f items/s): %s", len(items), seconds, len(items) / seconds, summary
    )
    for product_id, reason in list(report.errors.items())[:20]:
        log.info("  failed %s: %s", product_id, reason)
    return 0 if report.failed == 0 else 2


def _worker(args: argparse.Namespace) -> int:
    return run_worker(args.stages, args.name)


def _demo_feed(args: argparse.Namespace) -> int:
    rows = demo_feed.demo_rows(args.datasets, DEMO_MANIFESTS, args.base_url)
    if args.output is None:
        count = demo_feed.write_feed(rows, sys.stdout)
    else:
        with args.output.open("w", newline="", encoding="utf-8") as out:
            count = demo_feed.write_feed(rows, out)
    log.info("demo feed: %d products%s", count, f" written to {args.output}" if args.output else "")
    return 0 if count else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visualsearch", description="visualsearch command line")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the progress bar
    return int(args.handler(args))
