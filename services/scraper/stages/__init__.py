"""The ingest pipeline stages: FETCH -> fetch -> EMBED -> embed -> INDEX -> index -> indexer.

Each stage module exposes ``async def run(ctx: WorkerContext, stop: asyncio.Event) -> None`` and
drives its consumer group with :mod:`services.scraper.stages.runner`, which owns delivery:
reading, reclaiming a dead worker's messages, retries with back-off and dead-lettering.
"""
