"""Image downloads for the fetch stage, with a per-URL conditional-request cache in Redis.

For every image URL that answered with an ``ETag`` or ``Last-Modified`` the cache keeps those
validators and the sha256 of the body. A scheduled refresh then asks conditionally; a 304 still
yields the image's digest, so an unchanged product's content hash is known without a download.
"""

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.common.fetch import FetchError, SafeFetcher
from services.common.streams import as_text
from services.scraper.stages.failures import StageFailure, from_fetch_error
from services.scraper.stages.local_media import LocalMedia

_CACHE_PREFIX = "vs:ingest:url:"


@dataclass(frozen=True)
class Download:
    url: str
    digest: bytes  # sha256 of the image bytes
    body: bytes | None  # None: not modified since the cached digest (HTTP 304)


class UrlCache:
    """Validators and body digest per URL, kept ``ttl_s`` after the last download."""

    def __init__(self, client: aioredis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s

    @staticmethod
    def key(url: str) -> str:
        return _CACHE_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:32]

    async def conditional_headers(self, url: str) -> tuple[dict[str, str], bytes | None]:
        """Request headers that make the server answer 304 if unchanged, and the cached digest."""
        raw = await self.redis.hgetall(self.key(url))
        entry = {as_text(k): as_text(v) for k, v in raw.items()}
        if not entry.get("digest"):
            return {}, None
        headers = {}
        if entry.get("etag"):
            headers["If-None-Match"] = entry["etag"]
        if entry.get("last_modified"):
            headers["If-Modified-Since"] = entry["last_modified"]
        return headers, bytes.fromhex(entry["digest"]) if headers else None

    async def store(self, url: str, headers: dict[str, str], digest: bytes) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        etag, last_modified = lower.get("etag", ""), lower.get("last-modified", "")
        if not etag and not last_modified:
            return  # nothing to ask conditionally with next time
        key = self.key(url)
        async with self.redis.pipeline(transaction=True) as pipe:
            # Any: redis-py types the mapping with an invariant key type no plain dict matches.
            mapping: Any = {"etag": etag, "last_modified": last_modified, "digest": digest.hex()}
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()


class Downloader:
    def __init__(
        self, fetcher: SafeFetcher, cache: UrlCache, concurrency: int, local: LocalMedia | None = None
    ) -> None:
        self.fetcher = fetcher
        self.cache = cache
        self.local = local
        self._slots = asyncio.Semaphore(concurrency)  # downloads at once, across items

    async def fetch(self, url: str, number: int, conditional: bool) -> Download:
        """The image at ``url`` (the product's ``number``-th); raises StageFailure."""
        body = self.local.read(url) if self.local is not None else None
        if body is not None:  # no validators to keep: the content hash still spots unchanged items
            return Download(url, hashlib.sha256(body).digest(), body)
        headers, cached = await self.cache.conditional_headers(url) if conditional else ({}, None)
        async with self._slots:
            try:
                fetched = await self.fetcher.get(url, headers)
            except FetchError as exc:
                raise from_fetch_error(exc, url, number) from None
        if fetched.not_modified:
            if cached is None:
                raise StageFailure(
                    "http_status", f"image {number}: unexpected HTTP 304", http_status=304, url=url
                )
            return Download(url, cached, None)
        digest = hashlib.sha256(fetched.body).digest()
        await self.cache.store(url, fetched.headers, digest)
        return Download(url, digest, fetched.body)
