"""SSRF guards of every URL fetch (services.common.fetch), against a real HTTP server on loopback.

Name resolution is stubbed (no DNS), and any attempt to connect anywhere but loopback fails the
test instead of connecting: even a broken guard cannot reach a real internal or external host.
"""

import asyncio
import http.server
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.common.allowlist import AllowList
from services.common.fetch import Fetched, FetchError, FetchPolicy, SafeFetcher
from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError
from services.gateway.fetch import Fetcher
from services.scraper.config import ScraperSettings
from tests.http_server import serving

FAKE_DNS = {"shop.test": ["127.0.0.1"], "public-looking.example": ["127.0.0.1"], "cdn.example": ["8.8.8.8"]}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/to-private"):
            self.send_response(302)
            self.send_header("Location", "http://10.0.0.1/secret")
            self.end_headers()
            return
        body = f"host={self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


@pytest.fixture(autouse=True)
def sandbox(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Stubbed name resolution (names from ``dns``, IP literals as themselves) and a connect
    that refuses, and records, any peer that is not loopback."""
    dns = {name: list(addresses) for name, addresses in FAKE_DNS.items()}
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if name not in dns:
                raise socket.gaierror(socket.EAI_NONAME, "unknown in the test's DNS") from None
            name = dns[name].pop(0) if len(dns[name]) > 1 else dns[name][0]
        return real_getaddrinfo(name, port, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if (
            self.family in (socket.AF_INET, socket.AF_INET6)
            and not ipaddress.ip_address(address[0]).is_loopback
        ):
            pytest.fail(f"a connection to {address[0]} was attempted")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return dns


def fetch(url: str, allow: str = "") -> Fetched:
    async def run() -> Fetched:
        async with httpx.AsyncClient() as client:
            return await SafeFetcher(client, FetchPolicy(timeout_s=5, allow=AllowList.parse(allow))).get(url)

    return asyncio.run(run())


def refusal(url: str, allow: str = "") -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch(url, allow)
    return info.value


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("{origin}/x.jpg", "blocked"),  # http://127.0.0.1:port
        ("http://[::1]/x.jpg", "blocked"),
        ("http://169.254.169.254/latest/meta-data/", "blocked"),  # cloud metadata
        ("http://10.0.0.1/x.jpg", "blocked"),
        ("http://public-looking.example/x.jpg", "blocked"),  # a public-looking name for loopback
        ("http://0.0.0.0/x.jpg", "blocked"),
        ("file:///etc/passwd", "invalid_url"),
        ("gopher://example.com/_x", "invalid_url"),
        ("http://nowhere.invalid/x.jpg", "unresolvable"),
    ],
)
def test_refused_without_an_allow_list(origin: str, path: str, code: str) -> None:
    assert refusal(path.format(origin=origin)).code == code


def test_the_gateway_answers_a_refusal_with_422(origin: str) -> None:
    async def run() -> ApiError:
        settings = GatewaySettings(detector_addr="d:1", embedder_addr="e:1", indexer_addr="i:1")
        async with httpx.AsyncClient() as client:
            with pytest.raises(ApiError) as info:
                await Fetcher(client, settings).fetch(f"{origin}/x.jpg")
            return info.value

    error = asyncio.run(run())
    assert (error.status_code, error.code) == (422, "image_url_blocked")


@pytest.mark.parametrize("allow", ["127.0.0.1", "127.0.0.0/8, 10.9.0.0/16", "shop.test"])
def test_the_allow_list_admits_what_it_names(origin: str, allow: str) -> None:
    url = origin if allow != "shop.test" else origin.replace("127.0.0.1", "shop.test")
    assert fetch(f"{url}/x.jpg", allow).body.startswith(b"host=")


def test_the_allow_list_admits_nothing_else(origin: str) -> None:
    assert refusal("http://10.0.0.1/x.jpg", "127.0.0.1").code == "blocked"
    assert refusal(origin.replace("127.0.0.1", "public-looking.example"), "shop.test").code == "blocked"


def test_a_redirect_to_a_private_address_is_refused(origin: str) -> None:
    error = refusal(f"{origin}/to-private", "127.0.0.1")
    assert error.code == "blocked"
    assert "10.0.0.1" in error.message


def test_the_connection_goes_to_the_checked_address(origin: str, sandbox: dict[str, list[str]]) -> None:
    """DNS rebinding: the name resolves to an allowed address for the check and to an internal
    one afterwards; the fetch must still connect to the first (the sandbox fails any other)."""
    sandbox["rebind.test"] = ["127.0.0.1", "10.0.0.1", "10.0.0.1"]
    url = origin.replace("127.0.0.1", "rebind.test")
    fetched = fetch(f"{url}/x.jpg", "127.0.0.0/8")
    port = url.rsplit(":", 1)[1]
    assert fetched.body == f"host=rebind.test:{port}".encode()  # the server saw the name
    assert fetched.url == f"{url}/x.jpg"


def test_both_services_read_vs_fetch_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_FETCH_ALLOW", "cdn.internal, 10.1.0.0/16")
    gateway = GatewaySettings(detector_addr="d:1", embedder_addr="e:1", indexer_addr="i:1")
    for spec in (gateway.fetch_allow, ScraperSettings().fetch_allow):
        allow = AllowList.parse(spec)
        assert allow.allows_host("CDN.internal")
        assert allow.allows_address("10.1.2.3")
        assert not allow.allows_address("10.2.0.1")


@pytest.mark.parametrize("spec", ["http://x", "10.0.0.0/33", "*.example.com", "a b"])
def test_a_bad_allow_list_stops_start_up(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv("VS_FETCH_ALLOW", spec)
    with pytest.raises(ValidationError, match="neither a host name nor an IP network"):
        ScraperSettings()
