"""Embed stage (EMBED -> INDEX): the decoded images of several items in one Embed call.

A read takes up to ``embed_batch`` items; they are packed into calls of at most ``embed_batch``
images each. If the embedder rejects a call of several items (a bad image, a size cap), each item
is retried alone so that one bad item does not fail its batch-mates.
"""

import asyncio

import grpc
import numpy as np
from prometheus_client import Histogram

from services.common.gen.visualsearch.v1 import embedder_pb2, image_pb2
from services.common.jobs import ItemError
from services.common.streams import EMBED, INDEX, Message
from services.scraper.context import WorkerContext
from services.scraper.stages.actions import Action, Finish, Forward, failure_action
from services.scraper.stages.failures import StageFailure, from_rpc_error
from services.scraper.stages.payload import EmbedWork, PayloadError, Vectors, index_fields, read_embed
from services.scraper.stages.runner import Stage, run_stage

NAME = "embed"
BATCH_IMAGES = Histogram(
    "vs_scraper_embed_batch_images",
    "Images per Embed call of the embed stage.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


async def run(ctx: WorkerContext, stop: asyncio.Event) -> None:
    s = ctx.settings
    stage = EmbedStage(ctx)
    await run_stage(
        ctx, Stage(NAME, EMBED, stage.handle_batch, batch=s.embed_batch, in_flight=s.embed_in_flight), stop
    )


def pack(sizes: list[int], limit: int) -> list[list[int]]:
    """Groups consecutive indexes of ``sizes`` into runs whose sizes add up to at most ``limit``
    (an item bigger than ``limit`` travels alone)."""
    groups: list[list[int]] = []
    total = 0
    for index, size in enumerate(sizes):
        if not groups or total + size > limit:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += size
    return groups


class EmbedStage:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    async def handle_batch(self, messages: list[Message]) -> list[Action]:
        actions: dict[str, Action] = {}
        works: list[EmbedWork] = []
        for message in messages:
            try:
                works.append(read_embed(message))
            except PayloadError as exc:
                error = ItemError(message.text("product_id"), NAME, "invalid_message", str(exc))
                actions[message.id] = Finish("failed", error)
        groups = pack([len(w.images) for w in works], self.ctx.settings.embed_batch)
        for result in await asyncio.gather(*(self._embed([works[i] for i in g]) for g in groups)):
            actions.update(result)
        return [actions[m.id] for m in messages]

    async def _embed(self, works: list[EmbedWork]) -> dict[str, Action]:
        """One Embed call for every image of ``works``; an action per message id."""
        try:
            vectors, model_id = await self._call([image for w in works for image in w.images])
        except StageFailure as failure:
            if not failure.transient and len(works) > 1:
                singles = await asyncio.gather(*(self._embed([w]) for w in works))
                return {mid: action for single in singles for mid, action in single.items()}
            return {w.message.id: failure_action(failure, w.item.product_id, NAME, w.item.row) for w in works}
        actions: dict[str, Action] = {}
        start = 0
        for work in works:
            rows = vectors[start : start + len(work.images)]  # (n_images, dim)
            actions[work.message.id] = Forward(INDEX, index_fields(work, model_id, rows))
            start += len(work.images)
        return actions

    async def _call(self, images: list[image_pb2.RgbImage]) -> tuple[Vectors, str]:
        request = embedder_pb2.EmbedRequest(images=images)
        try:
            reply: embedder_pb2.EmbedResponse = await self.ctx.embedder.Embed(
                request, timeout=self.ctx.settings.embed_deadline_s
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, "embedder", "embed_failed") from None
        BATCH_IMAGES.observe(len(images))
        vectors = np.array([e.values for e in reply.embeddings], dtype=np.float32)  # (n, dim)
        if vectors.shape != (len(images), reply.dim) or not reply.model_id:
            # A reply that breaks the contract: likely a bad deploy, so retried, not blamed on the item.
            raise StageFailure(
                "embedder_unavailable",
                f"the embedder returned vectors of shape {vectors.shape} for {len(images)} images",
                transient=True,
            )
        return vectors, reply.model_id
