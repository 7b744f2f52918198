"""The crawl stage against a small static shop on a local HTTP server and a real Redis.

The shop (written by the test into tmp_path) has category pages, product pages with JSON-LD
and OpenGraph, real product photos from the shared datasets, a robots.txt that disallows
/private/, a broken link, a slow page, a PDF, a 404 image and a text file served as image/jpeg.
"""

import asyncio
import contextlib
import itertools
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.common.jobs import Jobs
from services.common.streams import CRAWLS, FETCH, Streams
from services.gateway.crawl_schemas import CrawlRequest
from services.scraper.config import ScraperSettings
from services.scraper.context import WorkerContext, open_context
from services.scraper.crawler import stage
from services.scraper.crawler.extract import url_id
from services.scraper.items import Item
from tests.http_server import serving

SLOW_S = 1.5  # the slow page answers after this...
TIMEOUT_S = 0.8  # ...but the crawler gives up after this
PHOTOS = {"alpro": "Alpro-Fresh-Soy-Milk_Iconic.jpg", "oatly": "Oatly-Natural-Oatghurt_Iconic.jpg"}


class Shop(ThreadingHTTPServer):
    daemon_threads = True
    robots_status = 200

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[float, str, str]] = []  # (monotonic time, Host header, path)
        super().__init__(("127.0.0.1", 0), ShopHandler)


class ShopHandler(SimpleHTTPRequestHandler):
    server: Shop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(args[2].root), **kwargs)

    def do_GET(self) -> None:
        self.server.requests.append((time.monotonic(), self.headers.get("Host", ""), self.path))
        if self.path == "/robots.txt" and self.server.robots_status != 200:
            self.send_error(self.server.robots_status)
            return
        if self.path == "/slow.html":
            time.sleep(SLOW_S)
        # The crawler hangs up on the slow page when it times out, as intended.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(root: Path) -> Iterator[Shop]:
    shop = Shop(root)
    with serving(shop):
        yield shop


def html(body: str, head: str = "", ld: Any = None) -> str:
    script = f'<script type="application/ld+json">{json.dumps(ld)}</script>' if ld is not None else ""
    return f"<!doctype html><html><head><meta charset='utf-8'>{head}{script}</head><body>{body}</body></html>"


def links(*hrefs: str) -> str:
    return "".join(f'<a href="{h}">{h}</a> ' for h in hrefs)


def product(sku: str | None, name: str, image: Any, offers: Any, **more: Any) -> dict[str, Any]:
    ld = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": name,
        "image": image,
        "offers": offers,
    }
    return ld | ({"sku": sku} if sku else {}) | more


def offer(price: Any, currency: str = "SEK") -> dict[str, Any]:
    return {"@type": "Offer", "price": price, "priceCurrency": currency}


def write_shop(root: Path, datasets: Path) -> None:
    pages: dict[str, str] = {
        "robots.txt": "User-agent: *\nDisallow: /private/\n",
        "index.html": html(
            links("/c/dairy.html", "/c/fruit.html#top", "/private/deals.html", "/missing.html")
            + links("/slow.html", "/docs/size-guide.pdf", "https://elsewhere.example/", "mailto:x@y.z")
        ),
        "c/dairy.html": html(
            links("/", "../p/alpro.html", "/p/oatly.html", "/p/yoghurt.html"),
            ld={
                "@type": "ItemList",
                "itemListElement": [
                    {
                        "@type": "ListItem",
                        "position": 1,
                        "item": product("ALPRO-1", "Alpro (listing)", "/img/alpro.jpg", offer(9.99))
                        | {"url": "/p/alpro.html"},
                    }
                ],
            },
        ),
        "c/fruit.html": html(
            links("/p/pineapple.html", "/p/red-beet.html", "/p/invalid.html", "/p/aubergine.html"),
            ld={
                "@type": "ItemList",
                "itemListElement": [
                    product("AUBERGINE-1", "Aubergine", "/img/aubergine.jpg", offer("12.50"))
                    | {"url": "/p/aubergine.html"}
                ],
            },
        ),
        "private/deals.html": html("", ld=product("SECRET-1", "Secret", "/img/alpro.jpg", offer(1))),
        "p/alpro.html": html(
            links("/p/deep.html", "/img/alpro.jpg"),
            ld=product(
                "ALPRO-1", "Alpro Fresh Soy Milk", ["/img/alpro.jpg"], offer("2.49", "EUR"), brand="Alpro"
            ),
        ),
        "p/deep.html": html("", ld=product("DEEP-1", "Too deep", "/img/alpro.jpg", offer(1))),
        "p/oatly.html": html(
            "",
            head='<meta property="og:type" content="product"><meta property="og:title" content="Oatly Oatghurt">'
            '<meta property="og:image" content="/img/oatly.jpg"><meta property="product:price:amount" content="3.10">'
            '<meta property="product:price:currency" content="SEK">'
            '<meta property="product:retailer_item_id" content="OATLY-7">',
        ),
        "p/yoghurt.html": html(
            "",
            ld={
                "@context": "https://schema.org",
                "@graph": [
                    {"@type": "WebPage", "name": "Yoghurt"},
                    product(
                        "ARLA-YOG",
                        "Arla Natural Yoghurt",
                        {"@type": "ImageObject", "contentUrl": "/img/missing.jpg"},  # a 404 image
                        {"@type": "AggregateOffer", "lowPrice": 1.5, "highPrice": 3, "priceCurrency": "SEK"},
                    ),
                ],
            },
        ),
        "p/pineapple.html": html("", ld=product("PINE-1", "Pineapple", "/img/fake.jpg", offer(15))),
        "p/red-beet.html": html(
            "",
            head='<script type="application/ld+json">{"@type": "Product",</script>',
            ld=product(None, "Red Beet", "../img/alpro.jpg", offer("7,90")),
        ),
        "p/invalid.html": html("", ld=product("BAD-1", "Negative", "/img/alpro.jpg", offer(-5))),
        "slow.html": html("slow"),
        "docs/size-guide.pdf": "%PDF-1.4 not really",
        "img/fake.jpg": "this is text, not a JPEG",
    }
    for name, text in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for name, photo in PHOTOS.items():
        shutil.copy(datasets / "grocery_store" / "catalog" / photo, root / "img" / f"{name}.jpg")


@pytest.fixture
def shop(tmp_path: Path, datasets_dir: Path) -> Iterator[Shop]:
    write_shop(tmp_path, datasets_dir)
    with serve(tmp_path) as server:
        yield server


def base_url(shop: Shop) -> str:
    return f"http://127.0.0.1:{shop.server_address[1]}"


def settings(redis_url: str, **overrides: Any) -> ScraperSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "allow_private_urls": True,
        "fetch_timeout_s": TIMEOUT_S,
    }
    return ScraperSettings(**(values | {"block_ms": 50} | overrides))


Until = Callable[[WorkerContext], Awaitable[bool]]


async def run_stage(config: ScraperSettings, name: str, until: Until, timeout_s: float = 30) -> None:
    """Runs the crawl stage until ``until`` holds, then stops it as a worker's SIGTERM would."""
    async with open_context(config, name=name) as ctx:
        stop = asyncio.Event()
        worker = asyncio.create_task(stage.run(ctx, stop))
        deadline = time.monotonic() + timeout_s
        while not await until(ctx):
            assert time.monotonic() < deadline, "the crawl did not get there in time"
            assert not worker.done(), worker
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(worker, 10)


async def queued_items(client: aioredis.Redis) -> list[Item]:
    entries: Any = await client.xrange(FETCH)
    return [Item.from_json(fields[b"item"]) for _, fields in entries]


def expected_products(base: str) -> dict[str, tuple[str, float, str, list[str]]]:
    """product id -> (title, price, currency, image URLs) the crawl must queue, and nothing else."""
    return {
        "ALPRO-1": ("Alpro Fresh Soy Milk", 2.49, "EUR", [f"{base}/img/alpro.jpg"]),  # not the listing's
        "OATLY-7": ("Oatly Oatghurt", 3.1, "SEK", [f"{base}/img/oatly.jpg"]),
        "ARLA-YOG": ("Arla Natural Yoghurt", 1.5, "SEK", [f"{base}/img/missing.jpg"]),
        "PINE-1": ("Pineapple", 15.0, "SEK", [f"{base}/img/fake.jpg"]),
        url_id(f"{base}/p/red-beet.html"): ("Red Beet", 7.9, "SEK", [f"{base}/img/alpro.jpg"]),
        "AUBERGINE-1": ("Aubergine", 12.5, "SEK", [f"{base}/img/aubergine.jpg"]),  # its page is a 404
    }


async def start_job(client: aioredis.Redis, spec: dict[str, Any]) -> str:
    await client.flushdb()
    job_id = await Jobs(client).create("crawl", spec)
    await Streams(client).add(CRAWLS, {"job_id": job_id})
    return job_id


def expanded(job_id: str) -> Until:
    async def check(ctx: WorkerContext) -> bool:
        status = await ctx.jobs.get(job_id)
        return status is not None and (status.expanded or status.status == "failed")

    return check


def test_the_shop_is_crawled_politely_and_every_product_is_queued(shop: Shop, redis_url: str) -> None:
    base = base_url(shop)
    spec = CrawlRequest(start_urls=[f"{base}/"], max_depth=2, rate_per_host=5, concurrency=4).spec()

    async def scenario(client: aioredis.Redis) -> None:
        job_id = await start_job(client, spec)
        await run_stage(settings(redis_url), "crawler-a", expanded(job_id))
        items = await queued_items(client)
        found = {
            i.product_id: (i.meta["title"], i.meta["price"], i.meta["currency"], image_urls(i)) for i in items
        }
        assert found == expected_products(base)
        assert {i.source for i in items} == {"crawl:127.0.0.1"}
        alpro = next(i for i in items if i.product_id == "ALPRO-1")
        assert (alpro.page_url, alpro.meta["url"], alpro.meta["brand"]) == (f"{base}/p/alpro.html",) * 2 + (
            "Alpro",
        )

        status = await Jobs(client).get(job_id)
        assert status is not None
        # No fetch stage runs here: the job waits for its six items.
        assert (status.status, status.expanded, status.total, status.queued) == ("running", True, 6, 6)
        errors = await Jobs(client).errors(job_id)
        assert {(e["code"], e["url"].removeprefix(base), e["http_status"]) for e in errors} == {
            ("robots_disallowed", "/private/deals.html", None),
            ("http_status", "/missing.html", 404),
            ("http_status", "/p/aubergine.html", 404),
            ("timeout", "/slow.html", None),
            ("not_html", "/docs/size-guide.pdf", None),
            ("invalid_jsonld", "/p/red-beet.html", None),
            ("invalid_product", "/p/invalid.html", None),
        }
        assert all(e["stage"] == "crawl" for e in errors)
        invalid = next(e for e in errors if e["code"] == "invalid_product")
        assert invalid["product_id"] == "BAD-1"
        assert "price: Input should be greater than or equal to 0" in invalid["message"]
        assert status.invalid_rows == len(errors)
        assert await client.hget(Jobs.key(job_id), "pages") == b"13"
        assert await client.xlen(CRAWLS) == 0  # acknowledged

    asyncio.run(with_redis(redis_url, scenario))
    paths = [path for _, _, path in shop.requests]
    assert paths[0] == "/robots.txt"
    assert sorted(paths[1:]) == sorted(
        ["/", "/c/dairy.html", "/c/fruit.html", "/missing.html", "/slow.html", "/docs/size-guide.pdf"]
        + [
            f"/p/{p}.html"
            for p in ("alpro", "oatly", "yoghurt", "pineapple", "red-beet", "invalid", "aubergine")
        ]
    )  # never /private/ (robots.txt), /p/deep.html (depth 3), nor an image (the fetch stage's job)
    times = [t for t, host, _ in shop.requests if host == base.removeprefix("http://")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) == len(paths)
    assert min(gaps) >= 1 / 5 - 0.05, gaps  # sent 0.2 s apart; arrival jitter aside


def test_a_stopped_crawl_stays_pending_and_a_restart_queues_nothing_twice(shop: Shop, redis_url: str) -> None:
    base = base_url(shop)
    spec = CrawlRequest(start_urls=[f"{base}/"], max_depth=2, rate_per_host=10, concurrency=2).spec()

    async def scenario(client: aioredis.Redis) -> None:
        job_id = await start_job(client, spec)

        async def some_products(ctx: WorkerContext) -> bool:
            return await ctx.streams.length(FETCH) >= 2

        await run_stage(settings(redis_url), "crawler-a", some_products)
        status = await Jobs(client).get(job_id)
        assert status is not None
        assert not status.expanded
        assert (await client.xpending(CRAWLS, stage.GROUP))["pending"] == 1  # left for a restart
        # Another worker takes the crawl over once it has been idle for reclaim_idle_s.
        await run_stage(settings(redis_url, reclaim_idle_s=0.2), "crawler-b", expanded(job_id))
        items = await queued_items(client)
        assert sorted(i.product_id for i in items) == sorted(expected_products(base))
        status = await Jobs(client).get(job_id)
        assert status is not None
        assert (status.total, status.expanded) == (6, True)
        assert await client.xlen(CRAWLS) == 0

    asyncio.run(with_redis(redis_url, scenario))


def test_an_unreadable_robots_txt_keeps_the_crawler_away(shop: Shop, redis_url: str) -> None:
    shop.robots_status = 503
    base = base_url(shop)
    spec = CrawlRequest(start_urls=[f"{base}/"]).spec()

    async def scenario(client: aioredis.Redis) -> None:
        job_id = await start_job(client, spec)
        await run_stage(settings(redis_url), "crawler-a", expanded(job_id))
        status = await Jobs(client).get(job_id)
        assert status is not None
        assert (status.status, status.message) == ("failed", "no page could be crawled; see the job's errors")
        (error,) = await Jobs(client).errors(job_id)
        assert (error["code"], error["http_status"], error["url"]) == (
            "robots_unavailable",
            503,
            f"{base}/robots.txt",
        )
        assert error["message"] == f"robots.txt returned HTTP 503; {base} is not crawled"

    asyncio.run(with_redis(redis_url, scenario))
    assert [path for _, _, path in shop.requests] == ["/robots.txt"]


def image_urls(item: Item) -> list[str]:
    return [item.meta["image_url"], *item.meta["image_urls"]]


async def with_redis(redis_url: str, scenario: Callable[[aioredis.Redis], Awaitable[None]]) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await scenario(client)
    finally:
        await client.aclose()
