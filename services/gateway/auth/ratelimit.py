"""Per-key request rate and daily quota, checked and counted by one atomic Redis script.

The rate is a GCRA token bucket: a key may send ``rate_per_min`` requests at once, then one more
every ``60 / rate_per_min`` seconds, so no rolling minute ever holds more than ``rate_per_min``
and, unlike a fixed window, no burst of twice that straddles a window boundary. Redis keeps one
number per key (the bucket's "theoretical arrival time"), expiring once the bucket is full again.

The quota counts requests per UTC day (every key's, limited or not) in a counter that expires at the next UTC midnight.

A refused request consumes neither: a client that backs off for Retry-After seconds gets through.
Every gateway shares the same counters, so the limits hold for the whole deployment. The time
comes from the gateway (NTP-synced hosts agree to far less than the slots involved), which also
lets the tests move the clock instead of sleeping.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis

DAY_MS = 86_400_000
MINUTE_MS = 60_000
_RATE = "vs:apikey:rate:"
_QUOTA = "vs:apikey:quota:"

# KEYS: the bucket (GCRA arrival time, ms), today's request counter.
# ARGV: now ms, requests per minute (0: no limit), requests today (0: no limit), next UTC midnight ms.
# Returns {0, 0} when counted, {1, wait ms} over the rate, {2, wait ms} over the quota.
_HIT = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local day_end = tonumber(ARGV[4])
if quota > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= quota then
  return {2, day_end - now}
end
if rate > 0 then
  local arrival = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + 60000 / rate
  local wait = arrival - now - 60000
  if wait > 0 then
    return {1, math.ceil(wait)}
  end
  redis.call('SET', KEYS[1], arrival, 'PX', math.ceil(arrival - now))
end
redis.call('INCR', KEYS[2])
redis.call('PEXPIREAT', KEYS[2], day_end)
return {0, 0}
"""

Reason = Literal["rate", "quota"]


@dataclass(frozen=True)
class Limits:
    rate_per_min: int  # 0: unlimited
    daily_quota: int  # 0: unlimited


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: Reason | None = None
    retry_after_s: int = 0  # whole seconds, at least 1 when refused (the Retry-After header)


def day_of(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%d")


def quota_key(key_id: str, now_ms: int) -> str:
    return f"{_QUOTA}{key_id}:{day_of(now_ms)}"


class RateLimiter:
    def __init__(self, client: aioredis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.clock = clock
        self._hit = client.register_script(_HIT)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def hit(self, key_id: str, limits: Limits) -> Verdict:
        """Counts one request of this key if both limits allow it (counted even when unlimited,
        so `keys list` shows every key's use today)."""
        now = self.now_ms()
        day_end = (now // DAY_MS + 1) * DAY_MS  # Unix time has no leap seconds: days are exact
        reply: Any = await self._hit(
            keys=[_RATE + key_id, quota_key(key_id, now)],
            args=[now, limits.rate_per_min, limits.daily_quota, day_end],
        )
        outcome, wait_ms = int(reply[0]), int(reply[1])
        if outcome == 0:
            return Verdict(True)
        reason: Reason = "rate" if outcome == 1 else "quota"
        return Verdict(False, reason, max(1, math.ceil(wait_ms / 1000)))

    async def used_today(self, key_id: str) -> int:
        """Requests this key made today (UTC), for ``visualsearch keys list``."""
        count = await self.redis.get(quota_key(key_id, self.now_ms()))
        return int(count) if count is not None else 0
