"""Readiness and port checks of the dev stack launcher."""

import socket
import time

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
