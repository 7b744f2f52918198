"""Catalog writes: collect a product's images, skip no-op updates by content hash, embed the
whole images (no detection) in one batch and upsert them with the metadata."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.catalog import ProductMeta, content_hash, image_key, image_urls, product_message
from services.common.errors import InvalidInput, TooLarge
from services.common.gen.visualsearch.v1 import image_pb2, indexer_pb2
from services.common.ids import validate_product_id
from services.common.images import ImageError, ImageLimits, decode_image, to_proto
from services.gateway.deps import GatewayState
from services.gateway.metrics import StageTimer
from services.gateway.schemas import ProductOut, PutProductResponse


@dataclass(frozen=True)
class Submission:
    meta: ProductMeta
    images: list[bytes] = field(default_factory=list)  # uploaded files; empty: fetch the URLs


async def collect_images(state: GatewayState, submission: Submission, timer: StageTimer) -> list[bytes]:
    """Uploaded bytes, or else the bytes behind image_url / image_urls (fetched concurrently)."""
    limit = state.settings.max_images_per_product
    if submission.images:
        images = submission.images
    else:
        urls = image_urls(submission.meta)
        if not urls:
            raise InvalidInput("at least one image is required: upload image(s) or give image_url/image_urls")
        if len(urls) > limit:
            raise InvalidInput(f"at most {limit} images per product; got {len(urls)}")
        with timer.stage("fetch"):
            images = list(await asyncio.gather(*(state.fetcher.fetch(u) for u in urls)))
    if len(images) > limit:
        raise InvalidInput(f"at most {limit} images per product; got {len(images)}")
    return images


def decode_all(images: Sequence[bytes], limits: ImageLimits) -> list[image_pb2.RgbImage]:
    """Blocking: decode every image, naming the failing one. Run it in a thread."""
    messages = []
    for number, data in enumerate(images, start=1):
        try:
            messages.append(to_proto(decode_image(data, limits).pixels))
        except ImageError as exc:
            raise type(exc)(exc.reason, f"image {number}: {exc.message}") from None
        except TooLarge as exc:
            raise TooLarge(f"image {number}: {exc.message}") from None
    return messages


async def embed_images(
    state: GatewayState, images: Sequence[bytes], timer: StageTimer
) -> indexer_pb2.UpsertRequest:
    """One Embed call for the distinct images; vectors keyed by their bytes' hash."""
    unique = {image_key(data): data for data in images}
    with timer.stage("decode"):
        messages = await asyncio.to_thread(decode_all, list(unique.values()), state.settings.image_limits)
    with timer.stage("embed"):
        vectors, model_id = await state.backends.embedder.embed(messages)
    return indexer_pb2.UpsertRequest(
        vectors=[
            indexer_pb2.Vector(values=row.tolist(), image_key=key)
            for key, row in zip(unique, vectors, strict=True)
        ],
        model_id=model_id,
    )


async def put_product(state: GatewayState, product_id: str, submission: Submission) -> PutProductResponse:
    """Creates or replaces a product; answers "unchanged" without embedding when nothing changed."""
    validate_product_id(product_id)
    timer = StageTimer()
    images = await collect_images(state, submission, timer)
    digest = content_hash(submission.meta, images)
    existing = await state.backends.indexer.find(product_id)
    if existing is not None and existing.content_hash == digest and existing.vector_count > 0:
        return PutProductResponse(status="unchanged", product=ProductOut.from_proto(existing))
    request = await embed_images(state, images, timer)
    request.product.CopyFrom(product_message(product_id, submission.meta, digest))
    with timer.stage("upsert"):
        stored = await state.backends.indexer.upsert(request)
    status = "created" if existing is None else "updated"
    return PutProductResponse(status=status, product=ProductOut.from_proto(stored))
