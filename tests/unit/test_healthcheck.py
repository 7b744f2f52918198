"""The container health probe against a real gRPC health service and a real HTTP server on loopback."""

import asyncio
import http.server
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from services.common.grpc_server import GrpcServer
from services.common.healthcheck import http_probe, main
from tests.http_server import serving
from tests.paths import ROOT

SERVICE = "visualsearch.v1.Detector"


def free_port() -> int:
    """A port nothing listens on: bound once by the OS, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_grpc_exit_status_follows_health(capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> list[int]:
        server = GrpcServer([SERVICE], max_message_bytes=4 * 1024 * 1024)
        port = await server.start("127.0.0.1", 0)
        target = f"127.0.0.1:{port}"
        try:
            # main() runs its own event loop, so it probes from a thread while this loop serves.
            before = await asyncio.to_thread(main, ["grpc", target, SERVICE])
            await server.set_serving()
            named = await asyncio.to_thread(main, ["grpc", target, SERVICE])
            whole = await asyncio.to_thread(main, ["grpc", target])
            unknown = await asyncio.to_thread(main, ["grpc", target, "visualsearch.v1.Nope"])
        finally:
            await server.stop(grace=0)
        return [before, named, whole, unknown]

    assert asyncio.run(scenario()) == [1, 0, 0, 1]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(f"{SERVICE}: NOT_SERVING")
    assert lines[1].endswith(f"{SERVICE}: SERVING")
    assert lines[2].endswith("(server): SERVING")
    assert lines[3].endswith("visualsearch.v1.Nope: SERVICE_UNKNOWN")


def test_grpc_nothing_listening_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    assert main(["grpc", f"127.0.0.1:{free_port()}", SERVICE]) == 1
    assert time.monotonic() - start < 2.5
    assert capsys.readouterr().err.strip().endswith(": UNAVAILABLE")


STATUS_BY_PATH = {"/healthz": 200, "/created": 201, "/readyz": 503}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        self.send_response(STATUS_BY_PATH.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keeps the test output clean."""


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "healthy", "seen"),
    [
        ("/healthz", True, "HTTP 200"),
        ("/created", True, "HTTP 201"),
        ("/readyz", False, "HTTP 503"),
        ("/missing", False, "HTTP 404"),
    ],
)
def test_http_healthy_only_on_2xx(http_base: str, path: str, healthy: bool, seen: str) -> None:
    assert http_probe(http_base + path) == (healthy, seen)


def test_http_timeout_and_unreachable_are_unhealthy(http_base: str) -> None:
    healthy, seen = http_probe(http_base + "/slow", timeout_s=0.2)
    assert not healthy
    assert "timed out" in seen
    healthy, seen = http_probe(f"http://127.0.0.1:{free_port()}/healthz")
    assert not healthy
    assert "refused" in seen.lower()


def test_http_rejects_non_http_urls() -> None:
    assert http_probe("file:///etc/passwd") == (False, "not an http(s) URL")


def test_cli_module_entry_point(http_base: str) -> None:
    """What the container HEALTHCHECK runs: the module as a program, judged by its exit status."""
    command = [sys.executable, "-m", "services.common.healthcheck", "http"]
    ok = subprocess.run([*command, http_base + "/healthz"], cwd=ROOT, capture_output=True, text=True)
    bad = subprocess.run([*command, http_base + "/readyz"], cwd=ROOT, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", f"http {http_base}/healthz: HTTP 200\n")
    assert (bad.returncode, bad.stderr) == (1, f"http {http_base}/readyz: HTTP 503\n")


def test_usage_errors_exit_non_zero() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["grpc"])
    assert exc.value.code == 2
