"""robots.txt: parsed with urllib.robotparser from text the crawler fetched itself, once per origin.

Availability rules follow RFC 9309: a 4xx robots.txt (404 and the like) means everything is
allowed; a 5xx or an unreachable one means nothing is (the host may be struggling, so the
crawler stays away).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.robotparser import RobotFileParser

from services.common.fetch import Fetched, FetchError

USER_AGENT = "visualsearch-bot"
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: crawlers must read at least 500 KiB


@dataclass(frozen=True)
class RobotsRules:
    parser: RobotFileParser | None = None  # None: one rule for every URL
    allow_all: bool = True  # the rule when there is no parser

    def allowed(self, url: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return self.parser.can_fetch(USER_AGENT, url)

    def delay_s(self) -> float | None:
        """Seconds between requests the site asks of this crawler (Crawl-delay or Request-rate)."""
        if self.parser is None:
            return None
        delays: list[float] = []
        if (delay := self.parser.crawl_delay(USER_AGENT)) is not None:
            delays.append(float(delay))
        if (rate := self.parser.request_rate(USER_AGENT)) is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays) if delays else None


ALLOW_ALL = RobotsRules(None, allow_all=True)
DISALLOW_ALL = RobotsRules(None, allow_all=False)


def parse_robots(text: str) -> RobotsRules:
    parser = RobotFileParser()
    parser.parse(text.splitlines())
    # The stdlib applies a group's first matching rule; RFC 9309 says the longest match wins
    # (an Allow on a tie), which is what sites write for: "Disallow: /a/" + "Allow: /a/public/".
    groups: list[Any] = [*getattr(parser, "entries", []), getattr(parser, "default_entry", None)]  # untyped
    for entry in groups:
        if entry is not None:
            entry.rulelines.sort(key=lambda rule: (-len(rule.path), not rule.allowance))
    return RobotsRules(parser)


def robots_url(origin: str) -> str:
    return origin.rstrip("/") + "/robots.txt"


def rules_from_fetch(fetched: Fetched | FetchError) -> RobotsRules:
    """The rules a robots.txt fetch outcome implies."""
    if isinstance(fetched, Fetched):
        return parse_robots(fetched.body.decode("utf-8", errors="replace"))
    if fetched.code == "http_status" and fetched.status is not None and 400 <= fetched.status < 500:
        return ALLOW_ALL
    return DISALLOW_ALL


Loader = Callable[[str], Awaitable[RobotsRules]]


class RobotsCache:
    """The rules of each origin, loaded once however many workers ask at the same time."""

    def __init__(self, load: Loader) -> None:
        self._load = load
        self._rules: dict[str, RobotsRules] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def rules(self, origin: str) -> RobotsRules:
        async with self._locks.setdefault(origin, asyncio.Lock()):
            if origin not in self._rules:
                # A load that raises caches nothing: the next caller tries again.
                self._rules[origin] = await self._load(origin)
            return self._rules[origin]
