"""Riding out a backend outage: the embedder or the indexer unreachable (down, restarting, or
still loading its model or index), which gRPC reports as UNAVAILABLE.

An outage is not the items' fault, so it must not use up their ``max_attempts``: an indexer that
takes a minute to reload a big index would otherwise dead-letter every item that reached it
meanwhile. The rules, per stage:

- An item is charged one attempt only if its call was already in flight when the stage learnt of
  the outage: it may have been what brought the backend down. Calls started later are not
  charged; their message keeps its delivery count.
- A waiting item is retried with the usual back-off, capped at ``outage_retry_max_s``, so work
  resumes within seconds of the backend's return; it is dead-lettered only after waiting
  ``outage_patience_s`` in all.
- Meanwhile the stage takes no new messages, which could only fail the same way. The waiting
  items are the probes: the first call that gets through reopens the stage.
"""

import time
from dataclasses import dataclass

from services.scraper.config import ScraperSettings
from services.scraper.outage import Outage
from services.scraper.stages.failures import backoff_s


@dataclass(frozen=True)
class Wait:
    """What to do with a message whose call found the backend unreachable."""

    delay_s: float
    charged: bool  # counts as one of the item's attempts


class BackendOutage:
    """One stage's view of its backend: answering, or unreachable since when."""

    def __init__(self, stage: str, settings: ScraperSettings) -> None:
        self.base_s = settings.retry_base_s
        self.max_s = min(settings.retry_max_s, settings.outage_retry_max_s)
        self.patience_s = settings.outage_patience_s
        meanwhile = f"its items wait for it, for up to {self.patience_s:.0f} s, and no new ones are taken"
        # Its ``since``: time.monotonic() the stage learnt of the outage, None while the backend answers.
        self.outage = Outage(f"{stage} stage", "its backend", meanwhile)
        self._waiting: dict[str, tuple[float, int]] = {}  # message id -> (first failure, failures)

    @property
    def active(self) -> bool:
        return self.outage.since is not None

    def failed(self, message_id: str, started: float, reason: str) -> Wait | None:
        """A call for ``message_id`` started at ``started`` (time.monotonic()) found the backend
        unreachable. None once the message has waited ``outage_patience_s``."""
        since = self.outage.since
        charged = since is None or started < since
        self.outage.failed(reason)
        now = time.monotonic()
        first, failures = self._waiting.get(message_id, (now, 0))
        if now - first >= self.patience_s:
            return None
        self._waiting[message_id] = (first, failures + 1)
        return Wait(backoff_s(failures + 1, self.base_s, self.max_s), charged)

    def waited_s(self, message_id: str) -> float:
        first, _ = self._waiting.get(message_id, (time.monotonic(), 0))
        return time.monotonic() - first

    def forget(self, message_id: str) -> None:
        """The message left this worker's hands (finished, dead, or pending for another worker)."""
        self._waiting.pop(message_id, None)

    def answered(self, started: float | None = None) -> None:
        """A call started at ``started`` got through, or (None) no item is left waiting: the
        stage takes new messages again. A call older than the outage says nothing about now."""
        since = self.outage.since
        if since is not None and (started is None or started >= since):
            self.outage.recovered()
