"""Fetching by URL from untrusted input, shared by the gateway, the ingest workers and the crawler.

Guards: http(s) only; every redirect hop re-checked; unless private URLs are allowed, a host whose
name resolves to any loopback/private/link-local/reserved address is refused (SSRF); a total
timeout; bodies read in chunks and cut off at a byte cap.
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field

import httpx

CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """Why a URL could not be fetched. ``code`` is stable: invalid_url, blocked, unresolvable,
    timeout, unreachable, too_many_redirects, http_status, too_large."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status  # the HTTP status for code "http_status"


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int  # 200, or 304 for a conditional request that found nothing new
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


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


async def checked_url(url: str, allow_private: bool) -> httpx.URL:
    """Parses the URL and, unless private URLs are allowed, resolves its host and refuses it if
    any address is not public (so a name cannot smuggle in a second, internal IP)."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchError("invalid_url", f"is not a valid URL: {exc}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise FetchError("invalid_url", "must be an absolute http(s) URL")
    if allow_private:
        return target
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(target.host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise FetchError("unresolvable", f"host {target.host!r} could not be resolved") from None
    for info in infos:
        address = str(info[4][0])
        if reason := blocked_reason(address):
            raise FetchError(
                "blocked", f"points to a {reason} address ({address}); only public hosts are fetched"
            )
    return target


class SafeFetcher:
    """GETs URLs from untrusted input with the guards above, over a shared httpx client."""

    def __init__(self, client: httpx.AsyncClient, policy: FetchPolicy) -> None:
        self.client = client
        self.policy = policy

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Fetched:
        """The body of ``url``. Conditional ``headers`` (If-None-Match...) may yield a 304 Fetched."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._follow(url, headers or {})
        except TimeoutError:
            raise FetchError("timeout", f"timed out after {self.policy.timeout_s:g} s") from None
        except httpx.TimeoutException:
            raise FetchError("timeout", "timed out") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FetchError("unreachable", str(exc) or type(exc).__name__) from None

    async def _follow(self, url: str, headers: dict[str, str]) -> Fetched:
        for _ in range(self.policy.max_redirects + 1):
            target = await checked_url(url, self.policy.allow_private)
            async with self.client.stream("GET", target, headers=headers, follow_redirects=False) as response:
                if response.status_code == 304:  # before the redirect check: httpx counts every 3xx
                    return Fetched(str(response.url), 304, b"", dict(response.headers))
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            "unreachable", f"HTTP {response.status_code} redirect without a Location"
                        )
                    url = str(response.url.join(location))
                    continue
                if not response.is_success:
                    raise FetchError(
                        "http_status", f"returned HTTP {response.status_code}", response.status_code
                    )
                body = await self._read_body(response)
                return Fetched(str(response.url), response.status_code, body, dict(response.headers))
        raise FetchError("too_many_redirects", f"more than {self.policy.max_redirects} redirects")

    async def _read_body(self, response: httpx.Response) -> bytes:
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError("too_large", f"is {declared} bytes; the limit is {limit} bytes")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes(CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise FetchError("too_large", f"is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
