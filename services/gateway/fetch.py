"""Getting image bytes from outside: uploads read in bounded chunks, ``image_url`` fetched with
SSRF guards, and site-relative ``/media/...`` paths read from ``media_dir``."""

import asyncio
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from services.common.allowlist import AllowList
from services.common.fetch import FetchError, FetchPolicy, SafeFetcher, checked_url
from services.common.paths import file_under
from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError
from services.gateway.limits import too_large

MEDIA_PREFIX = "/media/"


def _api_error(exc: FetchError) -> ApiError:
    if exc.code == "too_large":
        return ApiError(413, "too_large", f"the image at image_url {exc.message}")
    if exc.code == "http_status":
        return ApiError(422, "image_url_status", f"image_url {exc.message}")
    return _refusal(exc, "image_url") or ApiError(
        422, "image_url_unfetchable", f"image_url could not be fetched: {exc.message}"
    )


def _refusal(exc: FetchError, field: str, label: str = "") -> ApiError | None:
    """The 422 for a URL refused before any request (not http(s), or a blocked address), e.g.
    code ``feed_url_blocked``; None for other errors."""
    if exc.code not in ("blocked", "invalid_url"):
        return None
    return ApiError(422, f"{field}_{exc.code.removesuffix('_url')}", f"{label or field} {exc.message}")


class Fetcher:
    """Fetches images by URL with the app's shared client (SSRF-guarded, see services.common.fetch),
    or reads site-relative ``/media/...`` paths from ``media_dir``."""

    def __init__(self, client: httpx.AsyncClient, settings: GatewaySettings) -> None:
        self.remote = SafeFetcher(
            client,
            FetchPolicy(
                max_bytes=settings.max_upload_bytes,
                timeout_s=settings.fetch_timeout_s,
                max_redirects=settings.fetch_max_redirects,
                allow_private=settings.allow_private_urls,
                allow=AllowList.parse(settings.fetch_allow),
            ),
        )
        self.max_bytes = settings.max_upload_bytes
        self.media_dir = settings.media_dir

    async def fetch(self, url: str) -> bytes:
        if url.startswith("/"):
            return await self._read_media(url)
        try:
            return (await self.remote.get(url)).body
        except FetchError as exc:
            raise _api_error(exc) from None

    async def refuse_blocked(self, url: str, field: str, label: str = "") -> None:
        """422 now for a URL a worker would refuse to fetch later (not http(s), or a non-public
        address not in VS_FETCH_ALLOW), so a job is not accepted only to fail. Resolution errors
        are left to the job: DNS can be down for a moment, and refreshes retry."""
        try:
            await checked_url(url, self.remote.policy)
        except FetchError as exc:
            if refusal := _refusal(exc, field, label):
                raise refusal from None

    async def _read_media(self, url: str) -> bytes:
        path = unquote(urlsplit(url).path)
        if self.media_dir is None or not path.startswith(MEDIA_PREFIX):
            raise ApiError(
                422,
                "image_url_invalid",
                f"a site-relative image_url must start with {MEDIA_PREFIX} and needs media_dir to be set",
            )
        return await asyncio.to_thread(
            _read_media_file, self.media_dir, path[len(MEDIA_PREFIX) :], self.max_bytes
        )


def _read_media_file(media_dir: Path, relative: str, max_bytes: int) -> bytes:
    target = file_under(media_dir, relative)
    if target is None:
        raise ApiError(422, "image_url_not_found", f"image_url {MEDIA_PREFIX}{relative} does not exist")
    size = target.stat().st_size
    if size > max_bytes:
        raise too_large(size, max_bytes, "the image at image_url")
    return target.read_bytes()
