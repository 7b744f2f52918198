"""Why an item failed, and whether trying again can help.

Permanent failures (a 404 image, a file that is not an image, metadata that does not validate)
end the item at once with a precise code. Transient ones (timeouts, 5xx/429, a backend that is
down) leave the message pending so it is retried with back-off, and dead-lettered after
``max_attempts`` deliveries. The codes are stable: they reach the catalog owner through
GET /v1/imports/{id}/errors.
"""

import grpc
from pydantic import ValidationError

from services.common.catalog import ProductMeta
from services.common.errors import InvalidInput, TooLarge
from services.common.fetch import FetchError
from services.common.ids import validate_product_id
from services.common.images import ImageError
from services.common.jobs import ItemError
from services.scraper.items import Item

# Retrying these gRPC statuses may succeed: the backend is down, overloaded, restarting or broken
# for now. The others (INVALID_ARGUMENT, FAILED_PRECONDITION, RESOURCE_EXHAUSTED...) describe
# the request itself and will fail again.
TRANSIENT_GRPC = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DATA_LOSS,
    }
)
# The server may answer differently later (rate limit, overload, a too-early request).
_TRANSIENT_HTTP = frozenset({408, 425, 429})
# A timeout may pass; a refused connection or an unknown host is reported at once, because a
# shop whose image host is down wants to see "unreachable" now, not "retries_exhausted" later.
_TRANSIENT_FETCH = frozenset({"timeout"})


class StageFailure(Exception):
    """Raised by a stage's per-item code; the stage turns it into an ItemError for the job."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool = False,
        outage: bool = False,
        stage: str | None = None,
        http_status: int | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient or outage
        # The backend was unreachable: no fault of the item (see .backend_outage).
        self.outage = outage
        self.stage = stage  # None: the stage that caught it
        self.http_status = http_status
        self.url = url

    def item_error(self, product_id: str, stage: str, row: int | None = None) -> ItemError:
        return ItemError(
            product_id=product_id,
            stage=self.stage or stage,
            code=self.code,
            message=self.message,
            http_status=self.http_status,
            row=row,
            url=self.url,
        )


def is_transient_http(status: int) -> bool:
    return status >= 500 or status in _TRANSIENT_HTTP


def from_fetch_error(exc: FetchError, url: str, number: int) -> StageFailure:
    """A failed image download (``number`` counts the product's images from 1)."""
    transient = exc.code in _TRANSIENT_FETCH or (
        exc.code == "http_status" and exc.status is not None and is_transient_http(exc.status)
    )
    return StageFailure(
        exc.code,
        f"image {number}: {exc.message}",
        transient=transient,
        stage="fetch",
        http_status=exc.status,
        url=url,
    )


def from_image_error(exc: ImageError | TooLarge, url: str, number: int) -> StageFailure:
    """A downloaded file that does not decode: not_image, truncated, corrupt, too_small, too_large..."""
    code = exc.reason if isinstance(exc, ImageError) else "too_large"
    return StageFailure(code, f"image {number}: {exc.message}", stage="decode", url=url)


def from_rpc_error(exc: grpc.aio.AioRpcError, service: str, rejected_code: str) -> StageFailure:
    """A failed backend call: ``<service>_unavailable`` (transient) or ``rejected_code``.

    UNAVAILABLE is an outage: the backend is down, restarting or still loading, so the item
    waits for it without using up its attempts."""
    status = exc.code()
    transient = status in TRANSIENT_GRPC
    return StageFailure(
        f"{service}_unavailable" if transient else rejected_code,
        f"the {service} answered {status.name}: {exc.details() or 'no details'}",
        transient=transient,
        outage=status == grpc.StatusCode.UNAVAILABLE,
    )


def validated_meta(item: Item) -> ProductMeta:
    """The item's metadata, checked with the same rules as a PUT at the gateway."""
    try:
        validate_product_id(item.product_id)
    except InvalidInput as exc:
        raise StageFailure("invalid_product_id", exc.message) from None
    try:
        return item.product_meta()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'metadata'}: {e['msg']}" for e in exc.errors()
        )
        raise StageFailure("invalid_metadata", problems) from None


def backoff_s(deliveries: int, base_s: float, max_s: float) -> float:
    """Delay before the next attempt of a message delivered ``deliveries`` times (>= 1)."""
    exponent = min(max(deliveries, 1) - 1, 62)  # bounded: 2**62 already exceeds any max_s
    return float(min(max_s, base_s * 2**exponent))
