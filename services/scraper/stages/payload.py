"""Stream fields of the EMBED and INDEX messages, written by one stage and read by the next.

EMBED (fetch -> embed): ``job_id``, ``product_id``, ``item`` (the FETCH message's Item JSON,
passed through), ``content_hash``, ``images`` (JSON ``[{key, width, height}]`` of the decoded
pixels) and one ``px:<key>`` field per image holding its raw 8-bit RGB bytes (height x width x 3).

INDEX (embed -> index): ``job_id``, ``product_id``, ``item``, ``content_hash``, ``model_id``,
``dim``, ``image_keys`` (JSON list) and ``vectors``: little-endian float32 bytes, one row of
``dim`` values per image key.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.common.gen.visualsearch.v1 import image_pb2
from services.common.images import RGB
from services.common.streams import Message
from services.scraper.items import Item

Vectors = npt.NDArray[np.float32]  # (n, dim)
_FLOAT32_LE = np.dtype("<f4")


class PayloadError(ValueError):
    """A message whose fields do not follow this format (a bug or a foreign writer)."""


@dataclass(frozen=True)
class EmbedWork:
    message: Message
    item: Item
    content_hash: str
    keys: list[str]
    images: list[image_pb2.RgbImage]


@dataclass(frozen=True)
class IndexWork:
    message: Message
    item: Item
    content_hash: str
    model_id: str
    keys: list[str]
    vectors: Vectors  # (len(keys), dim)


def read_item(message: Message) -> Item:
    try:
        return Item.from_message(message)
    except (KeyError, ValueError, TypeError) as exc:
        raise PayloadError(f"unreadable work item: {exc}") from None


def embed_fields(message: Message, content_hash: str, images: dict[str, RGB]) -> dict[str, str | bytes]:
    """The EMBED message for a FETCH message whose images decoded to ``images`` (key -> pixels)."""
    index = [{"key": key, "width": px.shape[1], "height": px.shape[0]} for key, px in images.items()]
    fields: dict[str, str | bytes] = {
        "job_id": message.text("job_id"),
        "product_id": message.text("product_id"),
        "item": message.fields["item"],
        "content_hash": content_hash,
        "images": json.dumps(index),
    }
    for key, px in images.items():
        fields[f"px:{key}"] = np.ascontiguousarray(px).tobytes()
    return fields


def read_embed(message: Message) -> EmbedWork:
    item = read_item(message)
    try:
        index: list[dict[str, Any]] = json.loads(message.fields["images"])
        images = [
            image_pb2.RgbImage(
                width=int(entry["width"]),
                height=int(entry["height"]),
                pixels=message.fields[f"px:{entry['key']}"],
            )
            for entry in index
        ]
    except (KeyError, ValueError, TypeError) as exc:
        raise PayloadError(f"malformed images field: {exc!r}") from None
    for image in images:
        if len(image.pixels) != image.width * image.height * 3 or not image.pixels:
            raise PayloadError(f"{image.width}x{image.height} image with {len(image.pixels)} bytes")
    keys = [str(entry["key"]) for entry in index]
    return EmbedWork(message, item, message.text("content_hash"), keys, images)


def index_fields(work: EmbedWork, model_id: str, vectors: Vectors) -> dict[str, str | bytes]:
    """The INDEX message for an embedded item (``vectors``: (len(work.keys), dim))."""
    return {
        "job_id": work.message.text("job_id"),
        "product_id": work.message.text("product_id"),
        "item": work.message.fields["item"],
        "content_hash": work.content_hash,
        "model_id": model_id,
        "dim": str(vectors.shape[1]),
        "image_keys": json.dumps(work.keys),
        "vectors": np.ascontiguousarray(vectors, dtype=_FLOAT32_LE).tobytes(),
    }


def read_index(message: Message) -> IndexWork:
    item = read_item(message)
    try:
        keys = [str(k) for k in json.loads(message.fields["image_keys"])]
        dim = int(message.text("dim"))
        flat = np.frombuffer(message.fields["vectors"], dtype=_FLOAT32_LE)
    except (KeyError, ValueError, TypeError) as exc:
        raise PayloadError(f"malformed vectors: {exc!r}") from None
    if not keys or dim <= 0 or flat.size != len(keys) * dim:
        raise PayloadError(f"{flat.size} values for {len(keys)} vectors of dim {dim}")
    model_id = message.text("model_id")
    if not model_id:
        raise PayloadError("no model_id")
    vectors = flat.reshape(len(keys), dim).astype(np.float32)  # (n, dim), native byte order
    return IndexWork(message, item, message.text("content_hash"), model_id, keys, vectors)
