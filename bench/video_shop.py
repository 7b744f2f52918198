"""Shop now on video: cached answers (pre-indexed timeline) vs live frame searches, one run.

Starts the dev stack on free loopback ports with an empty catalog, PUTs a few dozen demo products,
registers a demo clip (POST /v1/videos), waits until it is pre-indexed, then times N
``GET /v1/videos/{id}/shop?t=`` (cached) against N ``POST /v1/shop/frame`` (live: fetch, seek,
decode, detect, embed, search) at the same times. Prints a table and writes
bench/results/video_shop.json.

If the stack's gateway does not serve the video routes yet, a second gateway (the same app with the
video router included) runs in this process against the stack's backends.

    .venv/bin/python bench/video_shop.py [--clip bottle-detection] [--samples 20] [--products 40]
"""

import argparse
import json
import statistics
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.devstack.ephemeral import ephemeral_stack  # noqa: E402
from services.scraper.cli import DEMO_MANIFESTS  # noqa: E402
from services.scraper.demo_feed import demo_rows  # noqa: E402

PRODUCT_FIELDS = ("title", "category", "brand", "price", "currency", "image_url")


def put_products(client: httpx.Client, datasets: Path, count: int) -> int:
    """``count`` demo products, taken evenly from each demo manifest."""
    per_manifest = max(1, count // len(DEMO_MANIFESTS))
    done = 0
    for manifest in DEMO_MANIFESTS:
        for row in islice(demo_rows(datasets, [manifest], "/media"), per_manifest):
            body = {k: row[k] for k in PRODUCT_FIELDS if row.get(k) not in (None, "")}
            response = client.put(f"/v1/products/{row['product_id']}", json=body)
            response.raise_for_status()
            done += 1
    return done


def wait_ready(client: httpx.Client, status_url: str, timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.get(status_url).json()
        if status["status"] in ("ready", "failed"):
            return status
        time.sleep(0.2)
    raise TimeoutError(f"not indexed after {timeout_s} s")


def timed(call: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response.json()


def measure(client: httpx.Client, video_id: str, media_url: str, times: list[float]) -> dict[str, Any]:
    cached_ms, live_ms, hits = [], [], 0
    for t in times:
        ms, body = timed(lambda t=t: client.get(f"/v1/videos/{video_id}/shop", params={"t": t}))
        cached_ms.append(ms)
        hits += bool(body["cached"])
        ms, _ = timed(lambda t=t: client.post("/v1/shop/frame", data={"video_url": media_url, "t": str(t)}))
        live_ms.append(ms)
    return {"cached_ms": cached_ms, "live_ms": live_ms, "cache_hits": hits}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        "min": round(ordered[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", default="bottle-detection", help="a clip in datasets/videos/clips")
    parser.add_argument("--samples", type=int, default=20, help="requests of each kind")
    parser.add_argument("--products", type=int, default=40, help="catalog products to PUT")
    args = parser.parse_args()
    with ephemeral_stack() as stack:
        settings = stack.settings
        with httpx.Client(base_url=settings.gateway_url, timeout=60) as client:
            products = put_products(client, settings.datasets_dir, args.products)
        with httpx.Client(base_url=settings.gateway_url, timeout=120) as client:
            media_url = f"/media/videos/clips/{args.clip}.mp4"
            started = time.perf_counter()
            registered = client.post("/v1/videos", json={"video_url": media_url})
            registered.raise_for_status()
            video_id = registered.json()["video_id"]
            status = wait_ready(client, registered.json()["status_url"])
            index_s = time.perf_counter() - started
            if status["status"] != "ready":
                raise RuntimeError(f"indexing failed: {status['message']}")
            duration = float(status["duration_s"])
            times = [round((i + 0.5) * duration / args.samples, 3) for i in range(args.samples)]
            timed(lambda: client.post("/v1/shop/frame", data={"video_url": media_url, "t": "0"}))  # warm-up
            runs = measure(client, video_id, media_url, times)
    cached, live = summary(runs["cached_ms"]), summary(runs["live_ms"])
    ratio = live["median"] / cached["median"]
    result = {
        "clip": args.clip,
        "duration_s": duration,
        "catalog_products": products,
        "indexing": {
            "seconds": round(index_s, 2),
            "frames_sampled": status["frames_sampled"],
            "frames_indexed": status["frames_indexed"],
            "markers": len(status["markers"]),
        },
        "samples": args.samples,
        "cache_hits": runs["cache_hits"],
        "cached_ms": cached,
        "live_ms": live,
        "speedup_median": round(ratio, 1),
    }
    idx = result["indexing"]
    print(
        f"clip {args.clip} ({duration:.1f} s), {products} products; indexed in {idx['seconds']} s: "
        f"{idx['frames_sampled']} frames sampled, {idx['frames_indexed']} searched, {idx['markers']} markers"
    )
    print(f"{'request':<34}{'median ms':>11}{'p90 ms':>9}{'min ms':>9}")
    for label, stats in (("GET /v1/videos/{id}/shop (cached)", cached), ("POST /v1/shop/frame (live)", live)):
        print(f"{label:<34}{stats['median']:>11}{stats['p90']:>9}{stats['min']:>9}")
    print(f"cache hits {runs['cache_hits']}/{args.samples}; cached is {ratio:.1f}x faster (median)")
    out = ROOT / "bench" / "results" / "video_shop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
