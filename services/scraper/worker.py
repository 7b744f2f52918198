"""``python -m services.scraper worker``: runs ingest stages in one process until SIGTERM/SIGINT.

Every stage is a consumer group, so starting more workers (of all stages, or of one with
``--stages embed``) scales the pipeline. On a signal each stage finishes what it has in flight
and returns; whatever is not finished stays pending in Redis for another worker.
"""

import asyncio
import importlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from services.common.logs import setup_logging
from services.common.metrics import start_metrics_server
from services.common.settings import load_settings
from services.scraper.config import ScraperSettings
from services.scraper.context import WorkerContext, open_context

log = logging.getLogger(__name__)

StageRun = Callable[[WorkerContext, asyncio.Event], Coroutine[Any, Any, None]]

STAGES = {
    "fetch": "services.scraper.stages.fetch",
    "embed": "services.scraper.stages.embed",
    "index": "services.scraper.stages.index",
    "feeds": "services.scraper.feed_stage",
    "crawls": "services.scraper.crawler.stage",
    "scheduler": "services.scraper.schedule",
}


class WorkerError(Exception):
    """A stage cannot be run (unknown name, missing module, no entry point)."""


def load_stage(name: str) -> StageRun:
    """The ``run(ctx, stop)`` entry point of stage ``name``, imported now."""
    module_name = STAGES.get(name)
    if module_name is None:
        raise WorkerError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name != missing and not module_name.startswith(missing + "."):
            raise  # the stage exists but one of its own imports is broken: show the real error
        raise WorkerError(f"stage {name!r} is not available: module {module_name} does not exist") from None
    run = getattr(module, "run", None)
    if not callable(run):
        raise WorkerError(f"stage {name!r}: {module_name} has no run(ctx, stop) entry point")
    return run  # type: ignore[no-any-return]


def resolve_stages(requested: str | None) -> dict[str, StageRun]:
    """The stages named in ``requested`` ("fetch,embed"), or every stage when None."""
    names = list(STAGES)
    if requested:
        names = list(dict.fromkeys(n.strip() for n in requested.split(",") if n.strip()))
        if not names:
            raise WorkerError("--stages names no stage")
    return {name: load_stage(name) for name in names}


async def serve(settings: ScraperSettings, stages: dict[str, StageRun], name: str | None = None) -> bool:
    """Runs ``stages`` until a signal; False if one of them crashed (which stops the others)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_context(settings, name) as ctx:
        log.info("worker %s running stages: %s", ctx.consumer, ", ".join(stages))
        ok = await run_stages(ctx, stages, stop)
    log.info("worker %s stopped", ctx.consumer)
    return ok


async def run_stages(ctx: WorkerContext, stages: dict[str, StageRun], stop: asyncio.Event) -> bool:
    """Runs the stages until ``stop``; a stage that fails or returns early stops them all."""
    pending = {asyncio.create_task(run(ctx, stop), name=stage) for stage, run in stages.items()}
    ok = True
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                log.error("stage %s crashed", task.get_name(), exc_info=task.exception())
                ok = False
            elif not stop.is_set():
                log.error("stage %s returned before the worker was stopped", task.get_name())
                ok = False
        if not ok:
            stop.set()  # a half-running worker would hide the failure; let the supervisor restart it
    return ok


def main(stages: str | None = None, name: str | None = None) -> int:
    settings = load_settings(ScraperSettings)
    setup_logging("scraper", settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per image download drowns the rest
    try:
        runs = resolve_stages(stages)
    except WorkerError as exc:
        log.critical("%s", exc)
        return 2
    start_metrics_server(settings.metrics_host, settings.metrics_port)
    return 0 if asyncio.run(serve(settings, runs, name)) else 1
