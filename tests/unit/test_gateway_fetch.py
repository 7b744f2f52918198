"""image_url safety checks, with literal IPs only (no DNS, no network)."""

import asyncio
from typing import Any

import httpx
import pytest

from services.common.fetch import blocked_reason
from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError
from services.gateway.fetch import Fetcher


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoint
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
    ],
)
def test_non_public_addresses_are_blocked(address: str, reason: str) -> None:
    assert blocked_reason(address) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None


def _settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(detector_addr="d:1", embedder_addr="e:1", indexer_addr="i:1", **overrides)


def _fetch_error(url: str, settings: GatewaySettings) -> ApiError:
    async def run() -> ApiError:
        async with httpx.AsyncClient() as client:
            with pytest.raises(ApiError) as info:
                await Fetcher(client, settings).fetch(url)
            return info.value

    return asyncio.run(run())


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/x.jpg", "http://[::1]/x.jpg", "http://169.254.169.254/latest/meta-data"]
)
def test_fetcher_refuses_literal_private_hosts_before_connecting(url: str) -> None:
    error = _fetch_error(url, _settings())
    assert (error.status_code, error.code) == (422, "image_url_blocked")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://example.com/", "http:///nohost.jpg"])
def test_fetcher_refuses_other_schemes(url: str) -> None:
    error = _fetch_error(url, _settings(allow_private_urls=True))
    assert error.status_code == 422


def test_site_relative_urls_need_media_dir() -> None:
    error = _fetch_error("/media/a.jpg", _settings())
    assert (error.status_code, error.code) == (422, "image_url_invalid")


def test_every_redirect_hop_is_checked_again() -> None:
    """A public host redirecting to the cloud metadata address is refused at the second hop."""
    requested: list[str] = []

    def public_site(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})

    async def run() -> ApiError:
        async with httpx.AsyncClient(transport=httpx.MockTransport(public_site)) as client:
            with pytest.raises(ApiError) as info:
                await Fetcher(client, _settings()).fetch("http://93.184.216.34/photo.jpg")
            return info.value

    error = asyncio.run(run())
    assert (error.status_code, error.code) == (422, "image_url_blocked")
    assert "169.254.169.254" in error.detail
    assert requested == ["http://93.184.216.34/photo.jpg"]  # the internal address was never requested
