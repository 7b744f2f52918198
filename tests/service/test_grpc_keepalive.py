"""Idle connections stay usable: GrpcServer accepts the keepalive pings our clients send.

Channels with client-side health checking (services.common.grpc_client) always hold a call open,
the health Watch, so their keepalive pings go out even while nothing else does. A server that
expects pings more rarely answers the third early one with GOAWAY too_many_pings and closes the
connection, failing the calls on it; the health-checked channel then fails its next call
UNAVAILABLE ("Too many pings"). The gateway's first readiness check after two quiet minutes met
that before servers accepted 30 s pings. These tests ping every second.
"""

import asyncio
import inspect

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc_client import make_channel
from services.common.grpc_server import CLIENT_KEEPALIVE_MS, GrpcServer

SERVICE = "visualsearch.test.Idle"
KEEPALIVE_MS = 1000  # gRPC clients never ping more often than once a second
IDLE_S = 8.0  # 8 pings: the server turns on the fourth, with seconds to spare on a slow machine


async def _open_call_after_idle(server_expects_pings_every_ms: int) -> grpc.StatusCode | None:
    """How the call held open on an idle connection ended (None: still open), once the
    connection answered one more call."""
    server = GrpcServer([SERVICE], 1 << 20, client_keepalive_ms=server_expects_pings_every_ms)
    port = await server.start("127.0.0.1", 0)
    await server.set_serving()
    # gRPC clients send at most two pings without data, then one a minute: lifted here so the
    # third ping comes within the test, not after a minute.
    options = [("grpc.keepalive_time_ms", KEEPALIVE_MS), ("grpc.http2.max_pings_without_data", 0)]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
    stub = health_pb2_grpc.HealthStub(channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    try:
        await watch.read()
        await asyncio.sleep(IDLE_S)
        await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        return await watch.code() if watch.done() else None
    finally:
        watch.cancel()
        await channel.close()
        await server.stop(grace=0)


def test_a_call_held_open_on_an_idle_connection_survives() -> None:
    assert asyncio.run(_open_call_after_idle(server_expects_pings_every_ms=KEEPALIVE_MS)) is None


def test_a_server_expecting_rarer_pings_kills_it() -> None:
    """The control, so the test above shows something: gRPC's default allows one per 5 min."""
    code = asyncio.run(_open_call_after_idle(server_expects_pings_every_ms=3_600_000))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_servers_expect_the_keepalive_clients_use() -> None:
    assert inspect.signature(make_channel).parameters["keepalive_ms"].default == CLIENT_KEEPALIVE_MS
    assert inspect.signature(GrpcServer).parameters["client_keepalive_ms"].default == CLIENT_KEEPALIVE_MS
