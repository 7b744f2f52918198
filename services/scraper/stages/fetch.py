"""Fetch stage (FETCH -> EMBED): validate an item, download and decode its images.

An item whose content hash (metadata + image bytes, exactly as a PUT at the gateway computes it)
is already indexed with vectors ends here as ``skipped``. With the per-URL conditional cache a
scheduled refresh of an unchanged product costs one 304 per image and no download at all.
"""

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar
from urllib.parse import urljoin

import grpc

from services.common.catalog import ProductMeta, content_hash_from_digests, image_key, image_urls
from services.common.errors import TooLarge
from services.common.gen.visualsearch.v1 import indexer_pb2
from services.common.images import RGB, ImageError, ImageLimits, decode_image
from services.common.jobs import ItemError
from services.common.streams import EMBED, FETCH, Message
from services.scraper.context import WorkerContext
from services.scraper.items import Item
from services.scraper.stages.actions import Action, Finish, Forward, failure_action, per_message
from services.scraper.stages.download import Download, Downloader, UrlCache
from services.scraper.stages.failures import StageFailure, from_image_error, from_rpc_error, validated_meta
from services.scraper.stages.index import remember_source
from services.scraper.stages.local_media import LocalMedia
from services.scraper.stages.payload import PayloadError, embed_fields, read_item
from services.scraper.stages.runner import Stage, run_stage

NAME = "fetch"
T = TypeVar("T")


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    s = ctx.settings
    stage = FetchStage(ctx)
    await run_stage(
        ctx,
        Stage(
            NAME,
            FETCH,
            per_message(stage.handle, NAME),
            batch=s.fetch_batch,
            # fetch_concurrency items at once, in batches of fetch_batch.
            in_flight=max(1, -(-s.fetch_concurrency // s.fetch_batch)),
            downstream=EMBED,
            high_water=s.embed_high_water,
        ),
        stop,
    )


class FetchStage:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        cache = UrlCache(ctx.redis, ctx.settings.url_cache_ttl_s)
        local = LocalMedia(ctx.settings.local_media, ctx.settings.fetch_max_bytes)
        self.downloader = Downloader(ctx.fetcher, cache, ctx.settings.fetch_concurrency, local)

    async def handle(self, message: Message) -> Action:
        try:
            item = read_item(message)
        except PayloadError as exc:
            return Finish("failed", ItemError(message.text("product_id"), NAME, "invalid_message", str(exc)))
        try:
            return await self._process(message, item)
        except StageFailure as failure:
            return failure_action(failure, item.product_id, NAME, item.row)

    async def _process(self, message: Message, item: Item) -> Action:
        meta = validated_meta(item)
        urls = self._urls(item, meta)
        downloads = await gather_all(
            [self.downloader.fetch(url, n, conditional=True) for n, url in enumerate(urls, start=1)]
        )
        digest = content_hash_from_digests(meta, [d.digest for d in downloads])
        if await self._unchanged(item.product_id, digest):
            await remember_source(self.ctx.redis, item)  # it may have come in another way before
            return Finish("skipped")
        # The product changed: images that answered 304 are needed in full after all.
        downloads = await gather_all([self._body(d, n) for n, d in enumerate(downloads, start=1)])
        digest = content_hash_from_digests(meta, [d.digest for d in downloads])
        images = await asyncio.to_thread(decode_all, downloads, self.ctx.settings.image_limits)
        return Forward(EMBED, embed_fields(message, digest, images))

    def _urls(self, item: Item, meta: ProductMeta) -> list[str]:
        # A site-relative image path ("/img/1.jpg") of a crawled product is relative to its page.
        urls = [urljoin(item.page_url, u) if item.page_url else u for u in image_urls(meta)]
        limit = self.ctx.settings.max_images_per_product
        if not urls:
            raise StageFailure("no_image", "the product has no image_url or image_urls")
        if len(urls) > limit:
            raise StageFailure("too_many_images", f"{len(urls)} images; the limit is {limit} per product")
        return urls

    async def _body(self, download: Download, number: int) -> Download:
        if download.body is not None:
            return download
        return await self.downloader.fetch(download.url, number, conditional=False)

    async def _unchanged(self, product_id: str, digest: str) -> bool:
        request = indexer_pb2.GetRequest(product_id=product_id)
        try:
            existing: indexer_pb2.Product = await self.ctx.indexer.Get(
                request, timeout=self.ctx.settings.index_deadline_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise from_rpc_error(exc, "indexer", "index_rejected") from None
        return existing.content_hash == digest and existing.vector_count > 0


def decode_all(downloads: Sequence[Download], limits: ImageLimits) -> dict[str, RGB]:
    """Blocking: the distinct images' pixels by image key, or StageFailure naming the bad image."""
    images: dict[str, RGB] = {}
    for number, download in enumerate(downloads, start=1):
        if download.body is None:
            raise RuntimeError(f"image {number} was not downloaded")
        key = image_key(download.body)
        if key in images:
            continue  # the same picture under two URLs gets one vector, as with a PUT
        try:
            images[key] = decode_image(download.body, limits).pixels
        except (ImageError, TooLarge) as exc:
            raise from_image_error(exc, download.url, number) from None
    return images


async def gather_all(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Runs every call to the end; raises the first permanent failure, else the first failure."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        permanent = [f for f in failures if isinstance(f, StageFailure) and not f.transient]
        raise (permanent or failures)[0]
    return [r for r in results if not isinstance(r, BaseException)]
