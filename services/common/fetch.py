"""Fetching by URL from untrusted input, shared by the gateway, the ingest workers and the crawler.

Guards: http(s) only; every redirect hop re-checked; a host whose name resolves to any
loopback/private/link-local/reserved address is refused (SSRF) unless the allow-list
(``VS_FETCH_ALLOW``, services.common.allowlist) names it, or private URLs are allowed wholesale
(dev stack); the connection goes to the very address that was checked, so a name cannot resolve
to a public address for the check and to an internal one for the connection (DNS rebinding); a
total timeout; bodies read in chunks and cut off at a byte cap.
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field

import httpx

from services.common.allowlist import AllowList

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
    allow: AllowList = field(default_factory=AllowList)


@dataclass(frozen=True)
class Checked:
    """A URL that passed the guards, and the address to connect to (None: connect by name)."""

    url: httpx.URL
    address: str | None = None

    def request_url(self) -> httpx.URL:
        """The URL to send: the checked address in place of the name, when there is one."""
        return self.url if self.address is None else self.url.copy_with(host=self.address)

    def request_headers(self, headers: dict[str, str]) -> dict[str, str]:
        if self.address is None:
            return headers
        return {**headers, "Host": self.url.netloc.decode("ascii")}  # host[:port] as given

    def extensions(self) -> dict[str, str]:
        # TLS still names (SNI) and verifies the certificate of the host, not of the address.
        return {} if self.address is None else {"sni_hostname": self.url.host}


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


async def checked_url(url: str, policy: FetchPolicy) -> Checked:
    """Parses the URL and resolves its host; refuses it if any address is not public (so a name
    cannot smuggle in a second, internal IP) unless the allow-list admits it. The result pins the
    connection to the first checked address."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchError("invalid_url", f"is not a valid URL: {exc}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise FetchError("invalid_url", "must be an absolute http(s) URL")
    if policy.allow_private or policy.allow.allows_host(target.host):
        return Checked(target)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(target.host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise FetchError("unresolvable", f"host {target.host!r} could not be resolved") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        reason = blocked_reason(address)
        if reason and not policy.allow.allows_address(address):
            raise FetchError(
                "blocked", f"points to a {reason} address ({address}); only public hosts are fetched"
            )
    if not addresses:
        raise FetchError("unresolvable", f"host {target.host!r} could not be resolved")
    return Checked(target, addresses[0])


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
            checked = await checked_url(url, self.policy)
            async with self.client.stream(
                "GET",
                checked.request_url(),
                headers=checked.request_headers(headers),
                extensions=checked.extensions(),
                follow_redirects=False,
            ) as response:
                final = str(checked.url)  # the URL as given, not the pinned address
                if response.status_code == 304:  # before the redirect check: httpx counts every 3xx
                    return Fetched(final, 304, b"", dict(response.headers))
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            "unreachable", f"HTTP {response.status_code} redirect without a Location"
                        )
                    url = str(checked.url.join(location))
                    continue
                if not response.is_success:
                    raise FetchError(
                        "http_status", f"returned HTTP {response.status_code}", response.status_code
                    )
                body = await self._read_body(response)
                return Fetched(final, response.status_code, body, dict(response.headers))
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
