"""Where an import job's feed comes from: an upload the gateway parked in Redis, or a URL.

A feed URL is fetched with the SSRF guards of every URL fetch, a byte cap and a timeout of its
own. Scheduled refreshes send the ETag/Last-Modified remembered for the URL, so an unchanged
feed costs one 304. A manual re-import always reads the whole feed: its items are re-checked
one by one (unchanged ones are skipped by content hash), which a 304 would prevent.
"""

import dataclasses
import hashlib
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, cast

import redis.asyncio as aioredis

from services.common.fetch import FetchError, SafeFetcher
from services.common.streams import as_text
from services.scraper.context import WorkerContext

_FULL_MESSAGE_CODES = frozenset({"http_status", "too_large", "blocked", "invalid_url", "timeout"})


class FeedUnavailable(Exception):
    """The feed cannot be read at all: the job fails with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FeedInput:
    data: bytes
    name: str  # the file name or URL: its extension hints at the format
    base_url: str | None = None  # the URL after redirects; relative URLs in the feed resolve against it
    content_type: str = ""
    validators: dict[str, str] = dataclasses.field(default_factory=dict)  # etag, last_modified


@dataclass(frozen=True)
class NotModified:
    since: str  # HTTP date of the version already imported


def cache_key(url: str) -> str:
    return "vs:feedcache:" + hashlib.sha256(url.encode()).hexdigest()


async def read_feed(ctx: WorkerContext, spec: dict[str, Any]) -> FeedInput | NotModified:
    if feed_key := spec.get("feed_key"):
        data = cast(bytes | None, await ctx.redis.get(str(feed_key)))  # the client returns bytes
        if data is None:
            raise FeedUnavailable("the uploaded feed has expired before it was read; upload it again")
        return FeedInput(data, name=str(spec.get("filename", "")))
    url = str(spec.get("feed_url", ""))
    if not url:
        raise FeedUnavailable("the job names no feed (neither an upload nor a feed_url)")
    cached = await _cached(ctx.redis, url) if spec.get("previous_job_id") else {}
    headers = {}
    if cached.get("etag"):
        headers["If-None-Match"] = cached["etag"]
    if cached.get("last_modified"):
        headers["If-Modified-Since"] = cached["last_modified"]
    settings = ctx.settings
    policy = dataclasses.replace(
        settings.fetch_policy(settings.max_feed_bytes), timeout_s=settings.feed_timeout_s
    )
    try:
        fetched = await SafeFetcher(ctx.http, policy).get(url, headers)
    except FetchError as exc:
        raise FeedUnavailable(_describe(url, exc)) from None
    if fetched.not_modified:
        return NotModified(cached.get("last_modified") or cached.get("fetched_at", "the last import"))
    validators = {
        name: fetched.headers[header]
        for name, header in (("etag", "etag"), ("last_modified", "last-modified"))
        if fetched.headers.get(header)
    }
    return FeedInput(fetched.body, url, fetched.url, fetched.headers.get("content-type", ""), validators)


async def remember(client: aioredis.Redis, url: str, feed: FeedInput, ttl_s: int) -> None:
    """Keeps the validators of a feed version that was fully read, for the next refresh."""
    key = cache_key(url)
    mapping: Any = {**feed.validators, "fetched_at": formatdate(usegmt=True)}  # see services.common.jobs
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, ttl_s)
        await pipe.execute()


async def _cached(client: aioredis.Redis, url: str) -> dict[str, str]:
    raw = await client.hgetall(cache_key(url))
    return {as_text(k): as_text(v) for k, v in raw.items()}


def _describe(url: str, exc: FetchError) -> str:
    if exc.code in _FULL_MESSAGE_CODES:
        return f"the feed at {url} {exc.message}"
    return f"the feed at {url} could not be fetched: {exc.message}"
