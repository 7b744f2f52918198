"""Index stage (INDEX -> indexer): upsert the product with its vectors, then record the outcome.

Upsert replaces a product's metadata and all of its vectors, so a message delivered twice (its
worker died after the upsert, before the acknowledgement) leaves the index exactly as once; and a
redelivery whose outcome is already recorded is acknowledged without a second upsert.
Each indexed product joins its source's set (``vs:source:<source>``), which sync mode uses to
delete products missing from a full re-import.
"""

import asyncio

import grpc
import redis.asyncio as aioredis

from services.common.catalog import product_message
from services.common.gen.visualsearch.v1 import indexer_pb2
from services.common.jobs import ItemError
from services.common.streams import INDEX, Message
from services.scraper.context import WorkerContext
from services.scraper.items import Item
from services.scraper.stages.actions import Ack, Action, Finish, failure_action, per_message
from services.scraper.stages.failures import StageFailure, from_rpc_error, validated_meta
from services.scraper.stages.payload import IndexWork, PayloadError, read_index
from services.scraper.stages.runner import Stage, run_stage

NAME = "index"
SOURCE_PREFIX = "vs:source:"


def source_key(source: str) -> str:
    """The Redis set of the product ids indexed from ``source`` (a feed or a crawl)."""
    return SOURCE_PREFIX + source


async def remember_source(client: aioredis.Redis, item: Item) -> None:
    """Records that ``item``'s product is in the index on behalf of its source (if it has one)."""
    if item.source:
        await client.sadd(source_key(item.source), item.product_id)


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    s, stage = ctx.settings, IndexStage(ctx)
    # index_in_flight upserts at once, in batches of index_batch items.
    in_flight = max(1, -(-s.index_in_flight // s.index_batch))
    await run_stage(
        ctx,
        Stage(NAME, INDEX, per_message(stage.handle, NAME), batch=s.index_batch, in_flight=in_flight),
        stop,
    )


class IndexStage:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    async def handle(self, message: Message) -> Action:
        if message.deliveries > 1 and await self.ctx.jobs.has_outcome(
            message.text("job_id"), message.text("product_id")
        ):
            # A stale redelivery: its worker died after recording the outcome, before the ack.
            # Upserting again could resurrect a product deleted since the job completed.
            return Ack()
        try:
            work = read_index(message)
        except PayloadError as exc:
            return Finish("failed", ItemError(message.text("product_id"), NAME, "invalid_message", str(exc)))
        try:
            await self._upsert(work)
        except StageFailure as failure:
            return failure_action(failure, work.item.product_id, NAME, work.item.row)
        await remember_source(self.ctx.redis, work.item)
        return Finish("done")

    async def _upsert(self, work: IndexWork) -> None:
        product = product_message(work.item.product_id, validated_meta(work.item), work.content_hash)
        request = indexer_pb2.UpsertRequest(
            product=product,
            vectors=[
                indexer_pb2.Vector(values=row.tolist(), image_key=key)
                for key, row in zip(work.keys, work.vectors, strict=True)
            ],
            model_id=work.model_id,
        )
        try:
            await self.ctx.indexer.Upsert(request, timeout=self.ctx.settings.index_deadline_s)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "indexer", "index_rejected") from None
