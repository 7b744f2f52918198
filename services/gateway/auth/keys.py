"""API keys in Redis, stored hashed: the secret is shown once, when the key is created.

A key is ``vs_`` + 43 URL-safe characters (256 random bits), so a plain sha256 of it is enough to
store: there is nothing to brute-force, and no salt or slow hash is needed. Redis keeps

- ``vs:apikey:sha256:<hex>``: the key's record (a hash), found from the secret in one lookup;
- ``vs:apikey:id:<key_id>``: the sha256 of a key id, for ``revoke`` (operators know ids, not secrets);
- ``vs:apikeys``: every key id by creation time, for ``list``.

A revoked key keeps its record, so its holder is told "revoked" rather than "unknown".
"""

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import redis.asyncio as aioredis

from services.common.streams import as_text

Scope = Literal["search", "catalog"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
SECRET_PREFIX = "vs_"
MAX_NAME_CHARS = 100
MAX_SECRET_CHARS = 200  # longer is never one of ours: not worth hashing
_RECORD = "vs:apikey:sha256:"
_BY_ID = "vs:apikey:id:"
_ALL = "vs:apikeys"
_NAME = re.compile(r"[^\x00-\x1f\x7f]+")  # printable: it is shown in `keys list`
_Mapping = Any  # redis-py types hset mappings with an invariant key type no plain dict matches


class KeySpecError(ValueError):
    """A key that cannot be created as asked (bad name, scope or limit)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[Scope, ...]
    rate_per_min: int | None  # None: the gateway's default (VS_GATEWAY_AUTH_RATE_PER_MIN)
    daily_quota: int | None  # None: the gateway's default (VS_GATEWAY_AUTH_DAILY_QUOTA)
    created_at_ms: int
    revoked_at_ms: int = 0

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms > 0

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """``"search,catalog"`` -> ("search", "catalog"), in the canonical order; KeySpecError if unknown."""
    given = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(given - set(SCOPES))
    if unknown or not given:
        raise KeySpecError(f"scopes must be a comma-separated subset of {','.join(SCOPES)}; got {text!r}")
    return tuple(scope for scope in SCOPES if scope in given)


def _check(name: str, limits: tuple[int | None, ...]) -> None:
    if not 1 <= len(name) <= MAX_NAME_CHARS or not _NAME.fullmatch(name):
        raise KeySpecError(f"the name must be 1-{MAX_NAME_CHARS} printable characters")
    if any(limit is not None and limit < 0 for limit in limits):
        raise KeySpecError("limits must be 0 (unlimited) or more")


def _optional_int(text: str) -> int | None:
    return int(text) if text else None


def _from_record(raw: dict[Any, Any]) -> ApiKey:
    h = {as_text(k): as_text(v) for k, v in raw.items()}
    return ApiKey(
        key_id=h["key_id"],
        name=h.get("name", ""),
        scopes=tuple(s for s in SCOPES if s in h.get("scopes", "").split(",")),
        rate_per_min=_optional_int(h.get("rate_per_min", "")),
        daily_quota=_optional_int(h.get("daily_quota", "")),
        created_at_ms=int(h.get("created_at_ms", 0) or 0),
        revoked_at_ms=int(h.get("revoked_at_ms", 0) or 0),
    )


class KeyStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def create(
        self,
        name: str,
        scopes: tuple[Scope, ...],
        rate_per_min: int | None = None,
        daily_quota: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret. The secret is not stored: this is the only time it exists."""
        _check(name, (rate_per_min, daily_quota))
        if not scopes:
            raise KeySpecError("a key needs at least one scope")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        hashed = digest(secret)
        key_id = secrets.token_hex(6)
        while not await self.redis.set(_BY_ID + key_id, hashed, nx=True):
            key_id = secrets.token_hex(6)  # 48 random bits: a clash is all but impossible, still checked
        key = ApiKey(key_id, name, scopes, rate_per_min, daily_quota, int(time.time() * 1000))
        mapping = {
            "key_id": key.key_id,
            "name": key.name,
            "scopes": ",".join(key.scopes),
            "rate_per_min": "" if rate_per_min is None else rate_per_min,
            "daily_quota": "" if daily_quota is None else daily_quota,
            "created_at_ms": key.created_at_ms,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_RECORD + hashed, mapping=cast(_Mapping, mapping))
            pipe.zadd(_ALL, {key_id: key.created_at_ms})
            await pipe.execute()
        return key, secret

    async def find(self, secret: str) -> ApiKey | None:
        """The key a request presents (revoked or not); None when no key has this secret."""
        if len(secret) > MAX_SECRET_CHARS:
            return None
        raw = await self.redis.hgetall(_RECORD + digest(secret))
        return _from_record(raw) if raw else None

    async def get(self, key_id: str) -> ApiKey | None:
        hashed = await self.redis.get(_BY_ID + key_id)
        if hashed is None:
            return None
        raw = await self.redis.hgetall(_RECORD + as_text(hashed))
        return _from_record(raw) if raw else None

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revokes at once (the next request with it is refused); None for an unknown id.
        Revoking twice keeps the first revocation time."""
        hashed = await self.redis.get(_BY_ID + key_id)
        if hashed is None:
            return None
        await self.redis.hsetnx(_RECORD + as_text(hashed), "revoked_at_ms", int(time.time() * 1000))
        return await self.get(key_id)

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        ids: Any = await self.redis.zrange(_ALL, 0, -1)
        keys = [await self.get(as_text(key_id)) for key_id in ids]
        return [key for key in keys if key is not None]
