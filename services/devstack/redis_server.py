"""The dev stack's Redis: the one given by VS_REDIS_URL if it answers, else a local redis-server."""

import logging
import os
import shutil
import time
from urllib.parse import urlparse

from services.devstack.checks import StackError, redis_ping, require_free_port
from services.devstack.config import StackSettings
from services.devstack.procs import ProcessTable

log = logging.getLogger(__name__)


def ensure_redis(settings: StackSettings, procs: ProcessTable) -> None:
    """Uses a Redis already answering at VS_REDIS_URL, or starts a local redis-server there (AOF on:
    every acknowledged write is in the file before Redis answers, so a restart loses nothing)."""
    if redis_ping(settings.redis_url):
        log.info("using the Redis already running at %s", settings.redis_url)
        return
    url = urlparse(settings.redis_url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise StackError(f"Redis at {settings.redis_url} is not reachable")
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server is not installed (./scripts/up installs it with apt-get)")
    redis_dir = settings.run_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    port = url.port or 6379
    require_free_port("127.0.0.1", port, "redis")
    cmd = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(redis_dir),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    procs.spawn("redis", cmd, dict(os.environ))
    deadline = time.monotonic() + 20
    while not redis_ping(settings.redis_url):
        if time.monotonic() > deadline:
            raise StackError(f"redis-server did not answer on port {port}")
        time.sleep(0.1)
    log.info("redis ready on %s", settings.redis_url)
