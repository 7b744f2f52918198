"""Getting a video onto local disk (PyAV needs a seekable file): uploads streamed to a file with
a byte cap, ``video_url`` fetched with the gateway's URL guards, ``/media/...`` read in place."""

import asyncio
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from starlette.datastructures import UploadFile

from services.common.fetch import CHUNK_BYTES, FetchError, SafeFetcher
from services.gateway.errors import ApiError
from services.gateway.fetch import MEDIA_PREFIX, Fetcher
from services.gateway.video.container import VideoError

_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")


def suffix_of(name: str) -> str:
    """A safe file suffix from a client-given name (".mp4"), or "" when it looks odd."""
    suffix = Path(urlsplit(name).path).suffix.lower()
    return suffix if _SUFFIX.match(suffix) else ""


def api_error(exc: VideoError) -> ApiError:
    return ApiError(exc.status, f"video_{exc.reason}", exc.message)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "too_large", f"the video is over the limit of {max_bytes} bytes")


async def save_upload(upload: UploadFile, dest: Path, max_bytes: int) -> None:
    """Streams the upload to ``dest``, failing (413) as soon as it passes ``max_bytes``."""
    total = 0
    with dest.open("wb") as out:
        while chunk := await upload.read(CHUNK_BYTES * 16):
            total += len(chunk)
            if total > max_bytes:
                raise _too_large(max_bytes)
            await asyncio.to_thread(out.write, chunk)
    if total == 0:
        raise ApiError(422, "video_empty", "the video is empty (0 bytes)")


def _media_file(media_dir: Path | None, url: str, max_bytes: int) -> Path:
    path = unquote(urlsplit(url).path)
    if media_dir is None or not path.startswith(MEDIA_PREFIX):
        raise ApiError(
            422,
            "video_url_invalid",
            f"a site-relative video_url must start with {MEDIA_PREFIX} and needs media_dir to be set",
        )
    root = media_dir.resolve()
    target = (root / path[len(MEDIA_PREFIX) :]).resolve()
    if not target.is_relative_to(root) or not target.is_file():  # ".." escapes count as missing
        raise ApiError(422, "video_url_not_found", f"video_url {path} does not exist")
    if target.stat().st_size > max_bytes:
        raise _too_large(max_bytes)
    return target


def _fetch_error(exc: FetchError) -> ApiError:
    if exc.code == "too_large":
        return ApiError(413, "too_large", f"the video at video_url {exc.message}")
    if exc.code in ("blocked", "invalid_url", "http_status"):
        return ApiError(422, f"video_url_{exc.code.removesuffix('_url')}", f"video_url {exc.message}")
    return ApiError(422, "video_url_unfetchable", f"video_url could not be fetched: {exc.message}")


def _write(dest: Path, data: bytes) -> None:
    dest.write_bytes(data)


async def fetch_video(fetcher: Fetcher, url: str, dest: Path, max_bytes: int) -> Path:
    """The local file holding the video at ``url``: a ``/media/`` file itself, else ``dest``."""
    if url.startswith("/"):
        return await asyncio.to_thread(_media_file, fetcher.media_dir, url, max_bytes)
    remote = SafeFetcher(fetcher.remote.client, replace(fetcher.remote.policy, max_bytes=max_bytes))
    try:
        body = (await remote.get(url)).body
    except FetchError as exc:
        raise _fetch_error(exc) from None
    if not body:
        raise ApiError(422, "video_empty", "the video at video_url is empty (0 bytes)")
    await asyncio.to_thread(_write, dest, body)
    return dest
