"""Riding out a Redis outage: every loop of a worker retries on its own, at a slow fixed pace, and
says so in the log when the outage starts, every so often while it lasts, and when it ends.

Without Redis a worker can do nothing useful (its queues, jobs and acknowledgements live there),
so it waits; it never exits, since a supervisor restarting it would not bring Redis back either.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RETRY_S = 1.0  # a retry a second costs nothing, and the worker resumes within a second
REMIND_S = 30.0  # a long outage is logged again at this pace, not at every retry

T = TypeVar("T")


class Outage:
    """The outage of ``dependency`` (Redis unless told) one loop is in, if any: ``what`` names the
    loop in the log, ``meanwhile`` says what it does until the dependency is back."""

    def __init__(
        self, what: str, dependency: str = "Redis", meanwhile: str = f"retrying every {RETRY_S:.0f} s"
    ) -> None:
        self.what = what
        self.dependency = dependency
        self.meanwhile = meanwhile
        self.since: float | None = None  # time.monotonic() of the first failure
        self._reminded = 0.0

    def failed(self, reason: object) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = self._reminded = now
            log.warning("%s: %s is unavailable (%s); %s", self.what, self.dependency, reason, self.meanwhile)
        elif now - self._reminded >= REMIND_S:
            self._reminded = now
            log.warning(
                "%s: %s still unavailable after %.0f s (%s)",
                self.what,
                self.dependency,
                now - self.since,
                reason,
            )

    def recovered(self) -> None:
        if self.since is not None:
            waited = time.monotonic() - self.since
            log.warning("%s: %s is back after %.1f s; resuming", self.what, self.dependency, waited)
            self.since = None


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleeps, waking early when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def until_redis_answers(what: str, call: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T | None:
    """``call()``, retried every :data:`RETRY_S` while Redis fails; None if ``stop`` came first."""
    outage = Outage(what)
    while not stop.is_set():
        try:
            result = await call()
        except RedisError as exc:
            outage.failed(exc)
            await sleep_unless(stop, RETRY_S)
            continue
        outage.recovered()
        return result
    return None
