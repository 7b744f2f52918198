"""`visualsearch models fetch` against a real HTTP server on loopback serving a file of known bytes.

The server honours Range requests (or, when told, ignores them), can answer 503 a few times, and
can cut the connection half-way through a body, so resume, restart and retry run for real.
"""

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.cli import main as visualsearch
from services.models.cli import main as models
from tests.http_server import serving

BODY = random.Random(4).randbytes(300_000)
SHA = hashlib.sha256(BODY).hexdigest()
WRONG_SHA = hashlib.sha256(b"other weights").hexdigest()
FILE = "tiny.onnx"


@dataclass
class Seen:
    range: str | None
    status: int


@dataclass
class FileServer:
    """Serves BODY at /model.onnx; anything else is a 404. Records every request it answers."""

    honour_range: bool = True
    fail_first: int = 0  # answer this many requests with 503 before serving
    cut_first: int = 0  # then send only half the body this many times, and hang up
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        requested = handler.headers.get("Range")
        if handler.path != "/model.onnx":
            self._send(handler, requested, 404, {}, b"no such file")
        elif self.fail_first > 0:
            self.fail_first -= 1
            self._send(handler, requested, 503, {}, b"busy")
        else:
            self._serve(handler, requested)

    def _serve(self, handler: BaseHTTPRequestHandler, requested: str | None) -> None:
        match = re.fullmatch(r"bytes=(\d+)-", requested or "") if self.honour_range else None
        start = int(match[1]) if match else 0
        if start >= len(BODY):
            self._send(handler, requested, 416, {"Content-Range": f"bytes */{len(BODY)}"}, b"")
            return
        headers = {"Content-Range": f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"} if match else {}
        body = BODY[start:]
        if self.cut_first > 0:
            self.cut_first -= 1
            self._send(handler, requested, 206 if match else 200, headers, body, cut=True)
        else:
            self._send(handler, requested, 206 if match else 200, headers, body)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        requested: str | None,
        status: int,
        headers: dict[str, str],
        body: bytes,
        cut: bool = False,
    ) -> None:
        self.seen.append(Seen(requested, status))
        handler.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2] if cut else body)
        handler.close_connection = True


@pytest.fixture
def server() -> Iterator[FileServer]:
    files = FileServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            files.answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        files.url = url
        yield files


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_FETCH_BACKOFF_S", "0.01")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # loopback must never go through a configured proxy
    monkeypatch.delenv("VS_EMBEDDER_MANIFEST", raising=False)


def manifest(tmp_path: Path, url: str, sha256: str = SHA) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(
        f'[tiny]\nfile = "{FILE}"\nsha256 = "{sha256}"\nurl = "{url}"\ninput = "input"\n'
        'output = "features"\nresize_shorter = 256\ncrop = 224\nmean = [0, 0, 0]\nstd = [1, 1, 1]\n'
        'licence = "test"\n'
    )
    return path


def fetch(tmp_path: Path, url: str, *extra: str, sha256: str = SHA) -> int:
    args = ["fetch", "tiny", "--manifest", str(manifest(tmp_path, url, sha256))]
    return models([*args, "--models-dir", str(tmp_path / "models"), *extra])


def installed(tmp_path: Path) -> Path:
    return tmp_path / "models" / FILE


def part(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / f"{FILE}.part").write_bytes(data)


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "models").glob("*"))


def test_fresh_download_is_verified_and_installed(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 0
    assert installed(tmp_path).read_bytes() == BODY
    assert leftovers(tmp_path) == [FILE]  # no .part left behind
    assert capsys.readouterr().out == f"{installed(tmp_path)}\n"
    assert server.seen == [Seen(None, 200)]


def test_a_valid_file_is_not_downloaded_again_unless_forced(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    installed(tmp_path).write_bytes(BODY)
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 0
    assert server.seen == []
    assert fetch(tmp_path, f"{server.url}/model.onnx", "--force") == 0
    assert server.seen == [Seen(None, 200)]
    assert installed(tmp_path).read_bytes() == BODY


def test_a_hash_mismatch_is_refused_and_leaves_nothing(
    server: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert fetch(tmp_path, f"{server.url}/model.onnx", sha256=WRONG_SHA) == 1
    assert leftovers(tmp_path) == []
    assert f"expected {WRONG_SHA}, got {SHA}" in caplog.text


def test_a_partial_download_resumes_with_a_range_request(server: FileServer, tmp_path: Path) -> None:
    part(tmp_path, BODY[:100_000])
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 0
    assert server.seen == [Seen("bytes=100000-", 206)]
    assert installed(tmp_path).read_bytes() == BODY
    assert leftovers(tmp_path) == [FILE]


def test_a_server_without_ranges_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    server.honour_range = False
    part(tmp_path, b"\0" * 100_000)  # wrong bytes: appending to them could never verify
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 0
    assert server.seen == [Seen("bytes=100000-", 200)]
    assert installed(tmp_path).read_bytes() == BODY


def test_a_dropped_connection_is_retried_from_where_it_stopped(server: FileServer, tmp_path: Path) -> None:
    server.cut_first = 1
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 0
    first, second = server.seen
    assert first == Seen(None, 200)
    assert second.status == 206
    assert second.range is not None
    assert int(second.range.removeprefix("bytes=").rstrip("-")) > 0  # resumed, not restarted
    assert installed(tmp_path).read_bytes() == BODY


def test_a_complete_part_file_is_verified_without_downloading_again(
    server: FileServer, tmp_path: Path
) -> None:
    part(tmp_path, BODY)  # an earlier run got every byte but stopped before verifying
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 0
    assert server.seen == [Seen(f"bytes={len(BODY)}-", 416)]
    assert installed(tmp_path).read_bytes() == BODY


def test_transient_503s_are_retried(
    server: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_first = 2
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 0
    assert [seen.status for seen in server.seen] == [503, 503, 200]
    assert caplog.text.count("HTTP 503 Service Unavailable; retrying") == 2
    assert installed(tmp_path).read_bytes() == BODY


def test_retries_give_up_after_the_configured_attempts(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VS_FETCH_ATTEMPTS", "3")
    server.fail_first = 10
    assert fetch(tmp_path, f"{server.url}/model.onnx") == 1
    assert len(server.seen) == 3
    assert "giving up" in caplog.text
    assert "after 3 attempts: HTTP 503" in caplog.text
    assert leftovers(tmp_path) == []


def test_a_404_is_a_clear_error_without_retries(
    server: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert fetch(tmp_path, f"{server.url}/missing.onnx") == 1
    assert f"{server.url}/missing.onnx answered HTTP 404 Not Found" in caplog.text
    assert server.seen == [Seen(None, 404)]
    assert leftovers(tmp_path) == []


def test_an_entry_without_url_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert fetch(tmp_path, "") == 1
    assert "model 'tiny' has no download URL" in caplog.text
    assert "pass --url URL" in caplog.text


def test_url_and_hash_on_the_command_line_fill_an_unpinned_entry(server: FileServer, tmp_path: Path) -> None:
    assert fetch(tmp_path, "", "--url", f"{server.url}/model.onnx", "--sha256", SHA, sha256="") == 0
    assert installed(tmp_path).read_bytes() == BODY


def test_a_bare_url_lands_under_its_output_name_through_the_visualsearch_command(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "detector" / "yolov8n.onnx"
    with pytest.raises(SystemExit) as exited:
        visualsearch(
            ["models", "fetch", "--url", f"{server.url}/model.onnx", "--sha256", SHA, "--output", str(target)]
        )
    assert exited.value.code == 0
    assert target.read_bytes() == BODY
    assert capsys.readouterr().out == f"{target}\n"
