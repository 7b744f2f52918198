"""The key store and the rate/quota script against a real redis-server, with a clock the tests move
(no sleeping: the limits are checked at exact instants)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
import redis.asyncio as aioredis

from services.gateway.auth.keys import KeyStore, digest
from services.gateway.auth.ratelimit import DAY_MS, Limits, RateLimiter, Verdict, quota_key

T = TypeVar("T")
# Noon UTC a few days ahead: Redis expires the counters by its own clock, so the tests' clock
# must not be in the past (a counter set to expire yesterday would vanish at once).
NOON = (int(time.time() * 1000) // DAY_MS + 3) * DAY_MS + DAY_MS // 2


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def with_client(redis_url: str, body: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def hits(redis_url: str, clock: Clock, limits: Limits, times: int, key_id: str = "k1") -> list[Verdict]:
    async def body(client: aioredis.Redis) -> list[Verdict]:
        limiter = RateLimiter(client, clock)
        return [await limiter.hit(key_id, limits) for _ in range(times)]

    return with_client(redis_url, body)


def stored_text(store: redis.Redis) -> str:
    """Every key name and value in the database, as text."""
    parts: list[object] = []
    for name in store.keys("*"):
        kind = store.type(name)
        parts.append(name)
        if kind == b"string":
            parts.append(store.get(name))
        elif kind == b"hash":
            parts.append(store.hgetall(name))
        elif kind == b"zset":
            parts.append(store.zrange(name, 0, -1))
    return "\n".join(map(repr, parts))


def test_a_burst_of_the_rate_then_one_request_per_slot(redis_url: str, store: redis.Redis) -> None:
    clock = Clock(NOON)
    limits = Limits(rate_per_min=3, daily_quota=0)
    first = hits(redis_url, clock, limits, 4)
    assert [v.allowed for v in first] == [True, True, True, False]
    assert (first[3].reason, first[3].retry_after_s) == ("rate", 20)  # one slot = 60 s / 3
    clock.ms += 19_000
    assert hits(redis_url, clock, limits, 1)[0].retry_after_s == 1
    clock.ms += 1_000
    assert [v.allowed for v in hits(redis_url, clock, limits, 2)] == [True, False]
    # The bucket expires once full again: an idle key leaves nothing behind.
    assert 0 < store.pttl("vs:apikey:rate:k1") <= 60_000


def test_a_refused_request_consumes_nothing(redis_url: str, store: redis.Redis) -> None:
    clock = Clock(NOON)
    limits = Limits(rate_per_min=1, daily_quota=5)
    assert [v.allowed for v in hits(redis_url, clock, limits, 10)] == [True] + [False] * 9
    assert store.get(quota_key("k1", clock.ms)) == b"1"  # only the request that went through
    clock.ms += 60_000  # a client that waited Retry-After gets through
    assert hits(redis_url, clock, limits, 1)[0].allowed


def test_the_daily_quota_renews_at_utc_midnight(redis_url: str, store: redis.Redis) -> None:
    clock = Clock(NOON)
    limits = Limits(rate_per_min=0, daily_quota=2)
    verdicts = hits(redis_url, clock, limits, 3)
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert (verdicts[2].reason, verdicts[2].retry_after_s) == ("quota", 12 * 3600)
    midnight = NOON + 12 * 3600 * 1000
    assert store.pexpiretime(quota_key("k1", NOON)) == midnight
    clock.ms = midnight - 1
    assert hits(redis_url, clock, limits, 1)[0] == Verdict(False, "quota", 1)
    clock.ms = midnight
    assert [v.allowed for v in hits(redis_url, clock, limits, 3)] == [True, True, False]
    assert midnight % DAY_MS == 0


def test_unlimited_keys_are_counted_but_never_refused(redis_url: str, store: redis.Redis) -> None:
    clock = Clock(NOON)
    assert all(v.allowed for v in hits(redis_url, clock, Limits(0, 0), 50))
    used = with_client(redis_url, lambda client: RateLimiter(client, clock).used_today("k1"))
    assert used == 50


def test_concurrent_requests_never_exceed_the_rate(redis_url: str, store: redis.Redis) -> None:
    """Many gateways (here: many concurrent calls on a connection pool) share one atomic count."""
    clock = Clock(NOON)

    async def body(client: aioredis.Redis) -> list[Verdict]:
        limiter = RateLimiter(client, clock)
        return list(await asyncio.gather(*(limiter.hit("k1", Limits(10, 25)) for _ in range(60))))

    verdicts = with_client(redis_url, body)
    assert sum(v.allowed for v in verdicts) == 10
    assert store.get(quota_key("k1", NOON)) == b"10"


def test_keys_are_stored_hashed_and_revocation_is_kept(redis_url: str, store: redis.Redis) -> None:
    async def body(client: aioredis.Redis) -> None:
        keys = KeyStore(client)
        created, secret = await keys.create("shop", ("search",), rate_per_min=5)
        assert secret.startswith("vs_")
        assert len(secret) == 46
        assert await keys.find(secret) == created
        assert await keys.find(secret + "x") is None
        assert await keys.find("vs_" + "a" * 500) is None
        revoked = await keys.revoke(created.key_id)
        assert revoked is not None
        assert revoked.revoked
        again = await keys.revoke(created.key_id)
        assert again == revoked  # the first revocation time is kept
        assert await keys.revoke("nope") is None
        assert [k.key_id for k in await keys.list()] == [created.key_id]
        found = await keys.find(secret)
        assert found == revoked
        assert (found.rate_per_min, found.daily_quota) == (5, None)
        everything = stored_text(store)
        assert secret not in everything
        assert digest(secret) in everything

    with_client(redis_url, body)
