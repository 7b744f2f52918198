"""gRPC server factory: standard health service, port 0, graceful shutdown, one error mapping."""

import asyncio
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import Histogram

from services.common.errors import ServiceError

log = logging.getLogger(__name__)

RPC_SECONDS = Histogram(
    "vs_grpc_server_handling_seconds",
    "Time to handle one gRPC call, by method and status code.",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Clients ping a connection every CLIENT_KEEPALIVE_MS while a call is open (services.common.grpc_client),
# so a dead peer is noticed. Channels with client-side health checking always have one open: the
# health Watch. By default a gRPC server allows one ping per 5 min while it sends no data, and
# answers the third early one with GOAWAY too_many_pings, failing every call on that connection.
CLIENT_KEEPALIVE_MS = 30_000

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def rpc(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wraps a servicer method: times it and turns domain errors into precise status codes.

    Anything unexpected is logged with its traceback and answered INTERNAL without details,
    so a bug never leaks internals to a client and never kills the server.
    """

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await method(self, request, context)
        except ServiceError as exc:
            code = exc.code
            await context.abort(exc.code, exc.message)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in %s", method.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            RPC_SECONDS.labels(method.__qualname__, code.name).observe(time.perf_counter() - start)
        raise AssertionError("unreachable: context.abort always raises")

    return wrapper


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


class GrpcServer:
    """An asyncio gRPC server with the standard health service.

    Health starts NOT_SERVING; the service flips it with :meth:`set_serving` once its model
    or index is loaded and warm, so readiness never turns green early.
    """

    def __init__(
        self,
        service_names: Iterable[str],
        max_message_bytes: int,
        client_keepalive_ms: int = CLIENT_KEEPALIVE_MS,
    ) -> None:
        # Connections are recycled every few minutes, so clients resolving dns:/// names look again
        # and spread over replicas added since (gRPC re-resolves only when a connection drops).
        recycle = [("grpc.max_connection_age_ms", 300_000), ("grpc.max_connection_age_grace_ms", 30_000)]
        pings = [("grpc.http2.min_ping_interval_without_data_ms", client_keepalive_ms // 2)]
        self.server = grpc.aio.server(options=[*server_options(max_message_bytes), *recycle, *pings])
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = [*service_names, ""]
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Binds (port 0 picks a free one), starts, and returns the bound port."""
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"could not bind gRPC server to {host}:{port}")
        for name in self.service_names:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        log.info("gRPC listening on %s:%d", host, self.port)
        return self.port

    async def set_serving(self) -> None:
        for name in self.service_names:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s", ", ".join(n for n in self.service_names if n))

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    async def run_until_signal(self, grace: float = 5.0) -> None:
        """Serves until SIGTERM/SIGINT, then drains in-flight calls for up to ``grace`` seconds."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        await self.stop(grace)
