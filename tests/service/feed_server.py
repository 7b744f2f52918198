"""A local HTTP server for feed tests (no tests here): serves whatever bytes a test sets per path,
with an ETag, answering conditional requests with 304."""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.http_server import serving


@dataclass
class FeedServer:
    base_url: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # path -> (body, content type)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, headers)

    def serve(self, path: str, body: bytes, content_type: str = "text/csv") -> str:
        self.files[path] = (body, content_type)
        return self.base_url + path


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append((self.path, dict(self.headers.items())))
            if self.path not in server.files:
                self.send_error(404)
                return
            body, content_type = server.files[self.path]
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    state = FeedServer("")
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))) as url:
        state.base_url = url
        yield state
