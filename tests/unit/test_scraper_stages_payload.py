"""The EMBED and INDEX message formats round-trip, and malformed messages are refused (pure)."""

import json

import numpy as np
import pytest

from services.common.streams import EMBED, FETCH, INDEX, Message
from services.scraper.items import Item
from services.scraper.stages.payload import (
    PayloadError,
    embed_fields,
    index_fields,
    read_embed,
    read_index,
)

ITEM = Item("p1", {"title": "Mug", "image_url": "https://shop.example/a.jpg"}, source="feed", row=4)


def message(stream: str, fields: dict[str, str | bytes]) -> Message:
    return Message(stream, "1-0", {k: v.encode() if isinstance(v, str) else v for k, v in fields.items()})


def fetch_message() -> Message:
    return message(FETCH, {"job_id": "j1", "product_id": "p1", "item": ITEM.to_json()})


def test_decoded_pixels_and_vectors_travel_between_stages_unchanged() -> None:
    rng = np.random.default_rng(1)
    pixels = {
        "k1": rng.integers(0, 255, (20, 30, 3), dtype=np.uint8),  # (h, w, 3)
        "k2": rng.integers(0, 255, (17, 16, 3), dtype=np.uint8),
    }
    work = read_embed(message(EMBED, embed_fields(fetch_message(), "hash1", pixels)))
    assert (work.item, work.content_hash, work.keys) == (ITEM, "hash1", ["k1", "k2"])
    for image, px in zip(work.images, pixels.values(), strict=True):
        assert (image.height, image.width) == px.shape[:2]
        np.testing.assert_array_equal(np.frombuffer(image.pixels, np.uint8).reshape(px.shape), px)

    vectors = rng.standard_normal((2, 8)).astype(np.float32)  # (images, dim)
    indexed = read_index(message(INDEX, index_fields(work, "model@1", vectors)))
    assert (indexed.item, indexed.content_hash, indexed.model_id, indexed.keys) == (
        ITEM,
        "hash1",
        "model@1",
        ["k1", "k2"],
    )
    np.testing.assert_array_equal(indexed.vectors, vectors)


def test_malformed_messages_are_refused() -> None:
    with pytest.raises(PayloadError, match="unreadable work item"):
        read_embed(message(EMBED, {"item": "{not json"}))
    fields = embed_fields(fetch_message(), "h", {"k1": np.zeros((4, 4, 3), np.uint8)})
    fields["px:k1"] = b"\x00" * 10  # not 4 x 4 x 3 bytes
    with pytest.raises(PayloadError, match="4x4 image with 10 bytes"):
        read_embed(message(EMBED, fields))
    del fields["px:k1"]
    with pytest.raises(PayloadError, match="malformed images"):
        read_embed(message(EMBED, fields))

    good = {"item": ITEM.to_json(), "model_id": "m", "dim": "4", "image_keys": json.dumps(["a", "b"])}
    with pytest.raises(PayloadError, match="12 values for 2 vectors of dim 4"):
        read_index(message(INDEX, {**good, "vectors": np.zeros(12, "<f4").tobytes()}))
    with pytest.raises(PayloadError, match="no model_id"):
        read_index(message(INDEX, {**good, "model_id": "", "vectors": np.zeros(8, "<f4").tobytes()}))
