"""One crawl job: visit the site breadth-first, politely, and emit every product found.

Politeness: robots.txt is fetched once per origin before any page of it (and is paced like any
other request); each host gets at most ``rate_per_host`` requests per second, fewer when robots.txt
asks for a Crawl-delay; ``concurrency`` bounds the requests in flight. Every request goes
through the SSRF-guarded fetcher with its timeout and a size cap.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

from pydantic import ValidationError

from services.common.catalog import ProductMeta, image_urls
from services.common.fetch import FetchError, SafeFetcher
from services.common.jobs import ItemError, Jobs
from services.scraper.context import WorkerContext
from services.scraper.crawler.extract import Candidate, Extraction, extract
from services.scraper.crawler.frontier import Frontier, HostQueue, host_of, normalize_url, origin_of
from services.scraper.crawler.page import decode_html, is_html
from services.scraper.crawler.politeness import Pacer
from services.scraper.crawler.robots import (
    DISALLOW_ALL,
    MAX_ROBOTS_BYTES,
    RobotsCache,
    RobotsRules,
    robots_url,
    rules_from_fetch,
)
from services.scraper.crawler.spec import CrawlSpec
from services.scraper.items import Item, emit_item

log = logging.getLogger(__name__)

ACCEPT_HTML = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
URLS_PER_PAGE = 10  # frontier memory bound: admitted URLs per page of budget


@dataclass
class CrawlReport:
    pages: int = 0  # page requests made (robots.txt not counted)
    parsed: int = 0  # HTML pages read
    emitted: int = 0  # products queued for fetching


def validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'product'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


class Crawl:
    def __init__(self, ctx: WorkerContext, job_id: str, spec: CrawlSpec, stop: asyncio.Event) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.spec = spec
        self.stop = stop
        self.report = CrawlReport()
        self.frontier = Frontier(spec.allowed_domains, spec.max_depth, spec.max_pages * URLS_PER_PAGE)
        self.pacer = Pacer.per_second(spec.rate_per_host)
        self.robots = RobotsCache(self._load_robots)
        policy = ctx.fetcher.policy
        self.page_fetcher = SafeFetcher(
            ctx.fetcher.client, replace(policy, max_bytes=ctx.settings.crawl_max_page_bytes)
        )
        self.robots_fetcher = SafeFetcher(ctx.fetcher.client, replace(policy, max_bytes=MAX_ROBOTS_BYTES))
        self._budget = spec.max_pages
        self._emitted: set[str] = set()
        # Products seen in a listing that links to their own page: emitted only if that page
        # does not yield them (it usually has the complete data).
        self._deferred: dict[str, Item] = {}

    async def run(self) -> bool:
        """Crawls until done (True) or until ``stop`` is set (False)."""
        for url in self.spec.start_urls:
            if (start := normalize_url(url, url)) is not None:
                self.frontier.add(start, 0)
        while self._budget > 0 and (level := self.frontier.take_level()) is not None:
            depth, urls = level
            queue = HostQueue(urls)
            async with asyncio.TaskGroup() as workers:
                for _ in range(min(self.spec.concurrency, len(queue))):
                    workers.create_task(self._worker(queue, depth))
            if self.stop.is_set():
                return False
        for product_id, item in self._deferred.items():
            if product_id not in self._emitted:
                await self._emit(item)
        return True

    async def _worker(self, queue: HostQueue, depth: int) -> None:
        while not self.stop.is_set() and self._budget > 0:
            url = queue.pop(self.pacer.ready_at)
            if url is None:
                return
            await self._visit(url, depth)

    async def _visit(self, url: str, depth: int) -> None:
        rules = await self.robots.rules(origin_of(url))
        # An origin whose robots.txt could not be read was reported once; its pages are skipped.
        if self.stop.is_set() or rules is DISALLOW_ALL:
            return
        if not rules.allowed(url):
            message = "robots.txt disallows visualsearch-bot from this page"
            await self._error("robots_disallowed", message, url)
            return
        if self._budget <= 0:
            return
        self._budget -= 1  # taken before waiting, so concurrent workers never overspend it
        if not await self._pace(host_of(url)):
            return
        page = await self._fetch_page(url)
        self.report.pages += 1
        await self.ctx.redis.hincrby(Jobs.key(self.job_id), "pages", 1)
        if page is None:
            return
        self.report.parsed += 1
        final_url, extraction = page
        for message in extraction.errors:
            await self._error("invalid_jsonld", message, final_url)
        for link in extraction.links:
            self.frontier.add(link, depth + 1)
        for candidate in extraction.products:
            await self._product(candidate, final_url)

    async def _pace(self, host: str) -> bool:
        """Waits for the host's next request slot; False if the crawl was stopped meanwhile."""
        loop = asyncio.get_running_loop()
        delay = self.pacer.reserve(host, loop.time()) - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
        return not self.stop.is_set()

    async def _load_robots(self, origin: str) -> RobotsRules:
        url = robots_url(origin)
        host = host_of(url)
        if not await self._pace(host):
            return DISALLOW_ALL  # stopping: nothing more is fetched from anywhere
        try:
            rules = rules_from_fetch(await self.robots_fetcher.get(url))
        except FetchError as exc:
            rules = rules_from_fetch(exc)
            if rules is DISALLOW_ALL:
                message = f"robots.txt {exc.message}; {origin} is not crawled"
                await self._error("robots_unavailable", message, url, exc.status)
        if (delay := rules.delay_s()) is not None:
            self.pacer.slow_down(host, delay)
        return rules

    async def _fetch_page(self, url: str) -> tuple[str, Extraction] | None:
        try:
            fetched = await self.page_fetcher.get(url, ACCEPT_HTML)
        except FetchError as exc:
            await self._error(exc.code, f"page {exc.message}", url, exc.status)
            return None
        final_url = normalize_url(fetched.url, fetched.url) or url
        if final_url != url:
            self.frontier.mark_seen(final_url)
            if not self.frontier.allows(final_url):
                await self._error("off_domain_redirect", f"redirected to {final_url}", url)
                return None
        content_type = fetched.headers.get("content-type", "")
        if not is_html(content_type):
            what = content_type.split(";")[0].strip() or "untyped"
            await self._error("not_html", f"page is {what}, not HTML", url)
            return None
        # Parsing a multi-megabyte page is CPU work: keep it off the event loop.
        html = decode_html(fetched.body, content_type)
        limit = self.ctx.settings.max_images_per_product
        return final_url, await asyncio.to_thread(extract, html, final_url, limit)

    async def _product(self, candidate: Candidate, page_url: str) -> None:
        try:
            meta = ProductMeta.model_validate(candidate.meta)
        except ValidationError as exc:
            message = f"invalid product data: {validation_message(exc)}"
            await self._error("invalid_product", message, page_url, product_id=candidate.product_id)
            return
        if not image_urls(meta):
            message = "the product has no image URL (JSON-LD image or og:image)"
            await self._error("no_image", message, page_url, product_id=candidate.product_id)
            return
        meta_json = meta.model_dump(mode="json")
        item = Item(candidate.product_id, meta_json, source=self.spec.source, page_url=page_url)
        if candidate.listed:
            self._deferred.setdefault(candidate.product_id, item)
        else:
            await self._emit(item)

    async def _emit(self, item: Item) -> None:
        if item.product_id in self._emitted:
            return  # the same product on another page (a variant URL, a second category)
        self._emitted.add(item.product_id)
        ctx = self.ctx
        if await emit_item(ctx.streams, ctx.jobs, self.job_id, item, ctx.settings.high_water):
            self.report.emitted += 1

    async def _error(
        self, code: str, message: str, url: str, status: int | None = None, product_id: str = ""
    ) -> None:
        error = ItemError(product_id, "crawl", code, message, http_status=status, url=url)
        await self.ctx.jobs.record_error(self.job_id, error)
