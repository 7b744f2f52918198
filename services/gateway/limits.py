"""Request body size limits, enforced while the body streams in, before anything buffers it."""

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.config import GatewaySettings
from services.gateway.errors import ApiError, error_response

LimitFor = Callable[[Scope], int]

# Room for the non-file form fields of a search request next to its image.
FORM_OVERHEAD_BYTES = 64 * 1024
SMALL_BODY_BYTES = 64 * 1024


class RouteBodyLimits:
    """Request body caps by route, decided before routing from the method and path."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.search = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
        self.product = settings.max_product_body_bytes
        self.feed = settings.max_feed_bytes + FORM_OVERHEAD_BYTES
        self.video = settings.max_video_bytes + FORM_OVERHEAD_BYTES

    def __call__(self, scope: Scope) -> int:
        method, path = scope["method"], scope["path"]
        if method == "POST" and path == "/v1/search":
            return self.search
        if method == "PUT" and path.startswith("/v1/products/"):
            return self.product
        if method == "POST" and path == "/v1/imports":
            return self.feed
        if method == "POST" and path in ("/v1/shop/frame", "/v1/videos"):
            return self.video
        return SMALL_BODY_BYTES


def too_large(size: int, limit: int, what: str = "the request body") -> ApiError:
    return ApiError(413, "too_large", f"{what} is {size} bytes; the limit is {limit} bytes")


class BodyLimitMiddleware:
    """Rejects a declared Content-Length over the limit up front, and counts streamed (chunked)
    bodies, failing as soon as they pass it.

    The streaming failure is an :class:`ApiError` raised from ``receive``; FastAPI re-raises
    HTTP exceptions from body parsing, so it reaches the error handlers as a 413.
    """

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            error = too_large(int(declared), limit)
            await error_response(413, error.code, error.detail)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(413, "too_large", f"the request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)
