"""Failure classification, retry back-off and the content hash of the fetch stage (pure)."""

import asyncio
import hashlib

import grpc
import pytest

from services.common.catalog import ProductMeta, content_hash, content_hash_from_digests
from services.common.errors import TooLarge
from services.common.fetch import FetchError
from services.common.images import ImageError
from services.scraper.items import Item
from services.scraper.stages.actions import Finish, Retry, failure_action
from services.scraper.stages.embed import pack
from services.scraper.stages.failures import (
    StageFailure,
    backoff_s,
    from_fetch_error,
    from_image_error,
    from_rpc_error,
    validated_meta,
)
from services.scraper.stages.fetch import gather_all

URL = "https://shop.example/a.jpg"


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("http_status", 404, False),
        ("http_status", 410, False),
        ("http_status", 403, False),
        ("http_status", 408, True),
        ("http_status", 429, True),
        ("http_status", 500, True),
        ("http_status", 503, True),
        ("timeout", None, True),
        ("unreachable", None, False),
        ("unresolvable", None, False),
        ("blocked", None, False),
        ("invalid_url", None, False),
        ("too_large", None, False),
        ("too_many_redirects", None, False),
    ],
)
def test_fetch_errors_keep_their_code_and_only_passing_ones_are_retried(
    code: str, status: int | None, transient: bool
) -> None:
    failure = from_fetch_error(FetchError(code, "went wrong", status), URL, 2)
    assert (failure.code, failure.transient, failure.http_status) == (code, transient, status)
    assert (failure.stage, failure.url, failure.message) == ("fetch", URL, "image 2: went wrong")


@pytest.mark.parametrize("reason", ["not_image", "truncated", "corrupt", "too_small", "empty"])
def test_decode_errors_are_permanent_with_the_decoders_reason(reason: str) -> None:
    failure = from_image_error(ImageError(reason, "bad pixels"), URL, 1)
    assert (failure.code, failure.stage, failure.transient) == (reason, "decode", False)
    too_large = from_image_error(TooLarge("too many pixels"), URL, 3)
    assert (too_large.code, too_large.message) == ("too_large", "image 3: too many pixels")


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="details")


@pytest.mark.parametrize(
    ("status", "code", "transient", "outage"),
    [
        (grpc.StatusCode.UNAVAILABLE, "embedder_unavailable", True, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "embedder_unavailable", True, False),
        (grpc.StatusCode.INTERNAL, "embedder_unavailable", True, False),
        (grpc.StatusCode.INVALID_ARGUMENT, "embed_failed", False, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "embed_failed", False, False),
        (grpc.StatusCode.FAILED_PRECONDITION, "embed_failed", False, False),
    ],
)
def test_backend_errors_split_into_outages_and_rejections(
    status: grpc.StatusCode, code: str, transient: bool, outage: bool
) -> None:
    failure = from_rpc_error(rpc_error(status), "embedder", "embed_failed")
    assert (failure.code, failure.transient, failure.outage) == (code, transient, outage)
    assert failure.message == f"the embedder answered {status.name}: details"
    action = failure_action(failure, "p1", "embed")
    assert isinstance(action, Retry if transient else Finish)
    assert not isinstance(action, Retry) or action.outage == outage


def test_a_permanent_failure_fails_the_item_and_a_transient_one_retries_it() -> None:
    permanent = failure_action(StageFailure("not_image", "no", stage="decode", url=URL), "p1", "fetch", 7)
    assert isinstance(permanent, Finish)
    assert permanent.outcome == "failed"
    assert permanent.error is not None
    assert (permanent.error.stage, permanent.error.code, permanent.error.row) == ("decode", "not_image", 7)
    transient = failure_action(StageFailure("timeout", "slow", transient=True), "p1", "fetch")
    assert isinstance(transient, Retry)
    assert (transient.error.stage, transient.error.code, transient.error.product_id) == (
        "fetch",
        "timeout",
        "p1",
    )


def test_backoff_doubles_per_delivery_up_to_the_cap() -> None:
    assert [backoff_s(d, 2.0, 60.0) for d in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(0, 0.5, 60.0) == 0.5  # a first delivery never waits less than the base
    assert backoff_s(10_000, 2.0, 300.0) == 300.0  # no overflow for a message delivered forever


def test_hash_from_digests_equals_the_catalog_content_hash() -> None:
    meta = ProductMeta(title="Mug", price=9.5, currency="eur", image_urls=[URL, URL + "?2"])
    images = [b"first image bytes", b"second"]
    digests = [hashlib.sha256(data).digest() for data in images]
    assert content_hash_from_digests(meta, digests) == content_hash(meta, images)
    assert content_hash_from_digests(meta, digests[::-1]) != content_hash(meta, images)  # order matters


def test_metadata_is_validated_like_a_put() -> None:
    assert validated_meta(Item("p1", {"title": "ok", "price": "3.5"})).price == 3.5
    with pytest.raises(StageFailure) as bad_id:
        validated_meta(Item("no spaces", {"title": "x"}))
    assert bad_id.value.code == "invalid_product_id"
    with pytest.raises(StageFailure) as bad_meta:
        validated_meta(Item("p1", {"currency": "EURO", "colour": "red"}))
    assert bad_meta.value.code == "invalid_metadata"
    assert "currency" in bad_meta.value.message
    assert "colour" in bad_meta.value.message


def test_items_are_packed_into_embed_calls_of_at_most_the_batch() -> None:
    assert pack([1, 1, 1, 1], 2) == [[0, 1], [2, 3]]
    assert pack([3, 2, 1, 4], 4) == [[0], [1, 2], [3]]
    assert pack([6, 1], 4) == [[0], [1]]  # an item bigger than the batch travels alone
    assert pack([], 4) == []


def test_gather_all_prefers_a_permanent_failure() -> None:
    async def fail(failure: Exception, delay: float) -> int:
        await asyncio.sleep(delay)
        raise failure

    async def scenario() -> None:
        slow = StageFailure("timeout", "slow", transient=True)
        gone = StageFailure("http_status", "404", http_status=404)
        with pytest.raises(StageFailure) as caught:
            await gather_all([fail(slow, 0), fail(gone, 0.01)])
        assert caught.value is gone
        with pytest.raises(StageFailure) as only:
            await gather_all([fail(slow, 0)])
        assert only.value is slow

    asyncio.run(scenario())
