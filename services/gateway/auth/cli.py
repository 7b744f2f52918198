"""``visualsearch keys``: create, list and revoke the gateway's API keys (stored in VS_REDIS_URL).

``create`` prints the new key on stdout, alone, once: ``key=$(visualsearch keys create ...)``.
Only its sha256 is stored, so a lost key cannot be shown again: revoke it and create another.
"""

import argparse
import asyncio
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime

import redis.asyncio as aioredis
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.exceptions import RedisError

from services.common.settings import load_settings
from services.common.streams import open_redis
from services.gateway.auth.keys import ApiKey, KeySpecError, KeyStore, Scope, parse_scopes
from services.gateway.auth.ratelimit import RateLimiter

log = logging.getLogger("visualsearch.keys")

EPILOG = """\
scopes:
  search   photo and URL search, more like this, reading products, Shop now on videos
  catalog  adding, replacing and deleting products, imports, crawls, registering videos
limits (0 = unlimited): a key without its own uses the gateway's VS_GATEWAY_AUTH_RATE_PER_MIN
and VS_GATEWAY_AUTH_DAILY_QUOTA. Keys are checked only with VS_GATEWAY_AUTH_ENABLED=true.
"""


class KeysSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("VS_REDIS_URL", "redis_url")
    )


def _scopes(text: str) -> tuple[Scope, ...]:
    try:
        return parse_scopes(text)
    except KeySpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (unlimited) or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visualsearch keys",
        description="API keys of the gateway.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis-url", metavar="URL", help="the stack's Redis (default: $VS_REDIS_URL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{create,list,revoke}")
    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--scopes", required=True, type=_scopes, help="search, catalog or search,catalog")
    create.add_argument("--rate-per-min", type=_limit, metavar="N", help="requests per minute")
    create.add_argument("--daily-quota", type=_limit, metavar="N", help="requests per UTC day")
    create.set_defaults(handler=_create)
    listing = sub.add_parser("list", help="every key (never its secret), with today's use")
    listing.set_defaults(handler=_list)
    revoke = sub.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id `create` and `list` show")
    revoke.set_defaults(handler=_revoke)
    run = sub.add_parser(
        "run",
        help="run COMMAND with a new unlimited key in $VS_API_KEY, revoked when it exits",
        description="For one-off jobs (the compose demo loader): the key lives as long as COMMAND.",
    )
    run.add_argument("--name", required=True, help="who or what the key is for")
    run.add_argument("--scopes", required=True, type=_scopes, help="search, catalog or search,catalog")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    run.set_defaults(handler=_run_with_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    url = args.redis_url or load_settings(KeysSettings).redis_url
    try:
        return asyncio.run(_run(args, url))
    except KeySpecError as exc:
        log.error("error: %s", exc)
    except RedisError as exc:
        log.error("error: Redis at %s: %s", url, exc)
    return 1


async def _run(args: argparse.Namespace, url: str) -> int:
    client = open_redis(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        return int(await args.handler(args, client))
    finally:
        await client.aclose()


async def _create(args: argparse.Namespace, client: aioredis.Redis) -> int:
    key, secret = await KeyStore(client).create(args.name, args.scopes, args.rate_per_min, args.daily_quota)
    log.info(
        "created key %s (%s, scopes %s); store it now, it cannot be shown again",
        key.key_id,
        key.name,
        ",".join(key.scopes),
    )
    sys.stdout.write(secret + "\n")
    return 0


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else "-"


def _shown(limit: int | None) -> str:
    return "default" if limit is None else "unlimited" if limit == 0 else str(limit)


def _row(key: ApiKey, used: int) -> tuple[str, ...]:
    return (
        key.key_id,
        ",".join(key.scopes),
        _shown(key.rate_per_min),
        _shown(key.daily_quota),
        str(used),
        _when(key.created_at_ms),
        _when(key.revoked_at_ms),
        key.name,
    )


async def _list(args: argparse.Namespace, client: aioredis.Redis) -> int:
    limiter = RateLimiter(client)
    rows: list[tuple[str, ...]] = [
        ("ID", "SCOPES", "RATE/MIN", "DAILY", "TODAY", "CREATED (UTC)", "REVOKED (UTC)", "NAME")
    ]
    rows += [_row(key, await limiter.used_today(key.key_id)) for key in await KeyStore(client).list()]
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]) + "\n")
    return 0


async def _revoke(args: argparse.Namespace, client: aioredis.Redis) -> int:
    key = await KeyStore(client).revoke(args.key_id)
    if key is None:
        log.error("error: no key with id %s (see `visualsearch keys list`)", args.key_id)
        return 1
    log.info("revoked key %s (%s) at %s UTC", key.key_id, key.name, _when(key.revoked_at_ms))
    return 0


async def _run_with_key(args: argparse.Namespace, client: aioredis.Redis) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        log.error("error: no command to run (visualsearch keys run --name N --scopes S -- COMMAND ...)")
        return 2
    store = KeyStore(client)
    key, secret = await store.create(args.name, args.scopes, 0, 0)  # 0 = unlimited: a trusted job
    log.info("created key %s (%s) for: %s", key.key_id, key.name, " ".join(cmd))
    try:
        done = await asyncio.to_thread(
            subprocess.run, cmd, env={**os.environ, "VS_API_KEY": secret}, check=False
        )
    finally:
        await store.revoke(key.key_id)
        log.info("revoked key %s", key.key_id)
    return done.returncode
