"""The work item that flows through the ingest stages: one product, all of its images.

All images of a product travel together so that the final upsert replaces the product's
vectors in one step (the indexer's Upsert semantics).

FETCH message fields: ``job_id``, ``product_id``, ``item`` (JSON of :class:`Item`).
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from services.common.catalog import ProductMeta
from services.common.jobs import Jobs
from services.common.streams import FETCH, Message, Streams


@dataclass(frozen=True)
class Item:
    product_id: str
    meta: dict[str, Any]  # ProductMeta fields (validated by the producer)
    source: str = ""  # the feed or crawl this product comes from (sync mode deletes per source)
    row: int | None = None  # feed line number, or None
    page_url: str | None = None  # crawled page, or None
    extra: dict[str, Any] = field(default_factory=dict)  # stage annotations (content hash...)

    def product_meta(self) -> ProductMeta:
        return ProductMeta.model_validate(self.meta)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "Item":
        return cls(**json.loads(text))

    @classmethod
    def from_message(cls, message: Message) -> "Item":
        return cls.from_json(message.fields["item"])


async def emit_item(streams: Streams, jobs: Jobs, job_id: str, item: Item, high_water: int) -> bool:
    """Producer side (feeds, crawls): counts the item in its job and queues it for fetching.

    Waits while the fetch stream is full, so a million-row feed never floods Redis. Returns False
    when the job already has this product (a duplicate product_id, or a re-run after a crash).
    """
    await streams.wait_below(FETCH, high_water)
    fields = {"job_id": job_id, "product_id": item.product_id, "item": item.to_json()}
    return await jobs.emit(job_id, item.product_id, FETCH, fields)
