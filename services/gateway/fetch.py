"""Getting image bytes from outside: uploads read in bounded chunks, ``image_url`` fetched with
SSRF guards, and site-relative ``/media/...`` paths read from ``media_dir``."""

import asyncio
import ipaddress
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from starlette.datastructures import UploadFile

from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError
from services.gateway.limits import too_large

CHUNK_BYTES = 64 * 1024
MEDIA_PREFIX = "/media/"


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The uploaded file's bytes, failing (413) as soon as they pass ``max_bytes``."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(413, "too_large", f"the image is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def blocked_reason(address: str) -> str | None:
    """Why an IP address must not be fetched from ("loopback", "private"...), or None if public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for reason, hit in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),
    ):
        if hit:
            return reason
    return None


def _unfetchable(reason: str) -> ApiError:
    return ApiError(422, "image_url_unfetchable", f"image_url could not be fetched: {reason}")


class Fetcher:
    """Fetches images by URL with the app's shared client. Redirects are followed by hand
    (at most ``fetch_max_redirects``) so every hop's destination is checked again."""

    def __init__(self, client: httpx.AsyncClient, settings: GatewaySettings) -> None:
        self.client = client
        self.max_bytes = settings.max_upload_bytes
        self.timeout_s = settings.fetch_timeout_s
        self.max_redirects = settings.fetch_max_redirects
        self.allow_private = settings.allow_private_urls
        self.media_dir = settings.media_dir

    async def fetch(self, url: str) -> bytes:
        if url.startswith("/"):
            return await self._read_media(url)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch_remote(url)
        except TimeoutError:
            raise _unfetchable(f"timed out after {self.timeout_s:g} s") from None
        except httpx.TimeoutException:
            raise _unfetchable("timed out") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise _unfetchable(str(exc) or type(exc).__name__) from None

    async def _fetch_remote(self, url: str) -> bytes:
        for _ in range(self.max_redirects + 1):
            target = await self._checked(url)
            async with self.client.stream("GET", target, follow_redirects=False) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise _unfetchable(f"HTTP {response.status_code} redirect without a Location")
                    url = str(response.url.join(location))
                    continue
                if not response.is_success:
                    raise ApiError(422, "image_url_status", f"image_url returned HTTP {response.status_code}")
                return await self._read_body(response)
        raise _unfetchable(f"more than {self.max_redirects} redirects")

    async def _checked(self, url: str) -> httpx.URL:
        """Parses the URL and, unless private URLs are allowed, resolves its host and refuses
        it if any address is not public (so a name cannot smuggle in a second, internal IP)."""
        target = httpx.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ApiError(422, "image_url_invalid", "image_url must be an absolute http(s) URL")
        if self.allow_private:
            return target
        port = target.port or (443 if target.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise _unfetchable(f"host {target.host!r} could not be resolved") from None
        for info in infos:
            address = str(info[4][0])
            if reason := blocked_reason(address):
                raise ApiError(
                    422,
                    "image_url_blocked",
                    f"image_url points to a {reason} address ({address}); only public hosts are fetched",
                )
        return target

    async def _read_body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large(int(declared), self.max_bytes, "the image at image_url")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes(CHUNK_BYTES):
            total += len(chunk)
            if total > self.max_bytes:
                raise ApiError(413, "too_large", f"the image at image_url is over {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

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
    root = media_dir.resolve()
    target = (root / relative).resolve()
    # resolve() follows "..": anything that lands outside media_dir is treated as missing.
    if not target.is_relative_to(root) or not target.is_file():
        raise ApiError(422, "image_url_not_found", f"image_url {MEDIA_PREFIX}{relative} does not exist")
    size = target.stat().st_size
    if size > max_bytes:
        raise too_large(size, max_bytes, "the image at image_url")
    return target.read_bytes()
