"""gRPC client helpers: channels with sane limits, health checks, and deadlines on every call."""

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc_server import server_options


def make_channel(address: str, max_message_bytes: int = 64 * 1024 * 1024) -> grpc.aio.Channel:
    """An insecure channel to a service on the cluster network (TLS terminates at the edge)."""
    options = [
        *server_options(max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # Round-robin over every address a name resolves to, so `--scale` replicas share load.
        ("grpc.lb_policy_name", "round_robin"),
    ]
    return grpc.aio.insecure_channel(address, options=options)


async def health_status(channel: grpc.aio.Channel, service: str = "", deadline_s: float = 1.0) -> str:
    """The health status name (SERVING, NOT_SERVING, ...) or UNAVAILABLE when unreachable."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        return "UNAVAILABLE" if exc.code() != grpc.StatusCode.NOT_FOUND else "SERVICE_UNKNOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
