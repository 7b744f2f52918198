"""Readiness and port checks of the dev stack launcher."""

import random
import socket
import time
from pathlib import Path

import redis

from services.common.grpc_client import health_status, make_channel


class StackError(RuntimeError):
    """The stack could not be brought up; the message says why and where the logs are."""


async def grpc_serving(address: str, service: str) -> str:
    async with make_channel(address) as channel:
        return await health_status(channel, service, deadline_s=1.0)


def redis_ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def require_free_port(host: str, port: int, name: str, wait_s: float = 5.0) -> None:
    """Fails if the port stays taken for ``wait_s``: a process just stopped may take a moment
    to release it, but a port held by something else is a configuration error."""
    deadline = time.monotonic() + wait_s
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"port {port} for {name} is taken ({exc.strerror}); set its port"
                    ) from exc
        time.sleep(0.1)


def free_port() -> int:
    """A free loopback port BELOW the kernel's ephemeral range: a port taken from that range
    (bind to 0) can be handed to an outgoing connection after we release it, and a service
    restarted later would then find its own port taken."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(20000, min(low, 32768)), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
