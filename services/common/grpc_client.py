"""gRPC client helpers: channels with sane limits, health checks, and deadlines on every call.

A backend address is one ``host:port`` (resolved by gRPC's DNS resolver, which re-resolves and
spreads calls over every address a name has: ``dns:///embedder:50052`` under ``compose --scale``
or a Kubernetes headless service), any gRPC target URI, or a list of replicas
``host:p1,host:p2`` (the dev stack's local processes), which becomes one static
``ipv4:``/``ipv6:`` target. Calls go round-robin over the replicas that report SERVING.
"""

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import AfterValidator

from services.common.grpc_server import CLIENT_KEEPALIVE_MS, server_options

# Targets gRPC resolves itself; anything else is host:port[,host:port...].
URI_SCHEMES = ("dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds")
EVERY_METHOD: tuple[str, ...] = ("*",)
# Retries only cover calls that never reached a live replica (UNAVAILABLE: refused, reset, a
# replica killed mid-call or still loading its model), so a dead replica costs no failed search.
RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# A backend that fails everything must not be hit by three times the load: retries stop while
# more than half of the token bucket is spent (each failure costs 1, each success earns 0.1).
RETRY_THROTTLING = {"maxTokens": 20, "tokenRatio": 0.1}

Resolver = Callable[[str, int], list[str]]
Endpoint = tuple[str, int]


def split_endpoints(address: str) -> list[Endpoint]:
    """``host:port[,host:port...]`` -> [(host, port)]; ValueError naming the bad element.
    IPv6 hosts are bracketed: ``[::1]:50052``."""
    endpoints = []
    for element in address.split(","):
        match = re.fullmatch(r"\s*(\[[0-9a-fA-F:.]+\]|[^\s:\[\],/]+):(\d{1,5})\s*", element)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"{element.strip()!r} is not host:port (in {address!r})")
        endpoints.append((match.group(1).strip("[]"), int(match.group(2))))
    return endpoints


def is_uri(address: str) -> bool:
    scheme, sep, rest = address.partition(":")
    return bool(sep) and scheme in URI_SCHEMES and not rest.isdigit()


def check_address(address: str) -> str:
    """Pydantic validator of an address setting: a gRPC target URI, or host:port elements."""
    if not is_uri(address):
        split_endpoints(address)
    return address


GrpcAddress = Annotated[str, AfterValidator(check_address)]
ADDRESS_HELP = (
    "host:port, replicas as host:p1,host:p2 (IPv6 as [addr]:port), or a gRPC target (dns:///name:port)"
)


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` has now (IPv4 and IPv6), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve replica host {host!r}: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def channel_target(address: str, resolver: Resolver = resolve) -> str:
    """The gRPC target for an address setting (see the module doc).

    A list's host names are resolved once, here; a fleet that changes addresses belongs behind
    one DNS name instead, which gRPC keeps re-resolving.
    """
    if is_uri(address) or "," not in address:
        return address
    resolved = []
    for host, port in split_endpoints(address):
        ips = [ipaddress.ip_address(ip) for ip in _addresses(host, port, resolver)]
        if not ips:
            raise ValueError(f"replica host {host!r} has no address")
        resolved.append((port, ips))
    # One target has one family: IPv4 when every replica has one (loopback names resolve to both).
    for version in (4, 6):
        if all(any(ip.version == version for ip in ips) for _, ips in resolved):
            endpoints = (_endpoint(ip, port) for port, ips in resolved for ip in ips if ip.version == version)
            return f"ipv{version}:" + ",".join(dict.fromkeys(endpoints))
    raise ValueError(f"the replicas of {address!r} mix IPv4-only and IPv6-only hosts")


def _addresses(host: str, port: int, resolver: Resolver) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return resolver(host, port)


def _endpoint(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"


def service_config(health_service: str = "", idempotent: Sequence[str] = ()) -> str:
    """The channel's service config: round-robin over the replicas whose health (standard
    grpc.health.v1, ``health_service``) is SERVING, and retries of the ``idempotent`` methods
    of that service (:data:`EVERY_METHOD` for all of them)."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if health_service:
        config["healthCheckConfig"] = {"serviceName": health_service}
    if health_service and idempotent:
        names = (
            [{"service": health_service}]
            if tuple(idempotent) == EVERY_METHOD
            else [{"service": health_service, "method": method} for method in idempotent]
        )
        config["methodConfig"] = [{"name": names, "retryPolicy": RETRY_POLICY}]
        config["retryThrottling"] = RETRY_THROTTLING
    return json.dumps(config)


def make_channel(
    address: str,
    max_message_bytes: int = 64 * 1024 * 1024,
    health_service: str = "",
    idempotent: Sequence[str] = (),
    keepalive_ms: int = CLIENT_KEEPALIVE_MS,
) -> grpc.aio.Channel:
    """An insecure channel to a service on the cluster network (TLS terminates at the edge).

    With ``health_service``, a replica takes calls only while it reports that service SERVING
    (warming up or draining replicas are skipped), and ``idempotent`` methods are retried on
    another replica when one is unreachable. Without it (readiness probes), a NOT_SERVING
    backend stays reachable, so its status can be read.
    """
    options: list[tuple[str, Any]] = [
        *server_options(max_message_bytes),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        # Round-robin over every address a name resolves to, so `--scale` replicas share load.
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.service_config", service_config(health_service, idempotent)),
        # Our config, never one from DNS TXT records.
        ("grpc.service_config_disable_resolution", 1),
        # A call is only retried while its request is still buffered (256 KiB by default): an Embed
        # of a few photos' pixels is megabytes. The buffer holds the bytes being sent anyway, until
        # the reply; all calls of a channel together hold at most grpc.retry_buffer_size (256 MiB).
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
        # A restarted replica is found again within seconds (gRPC's default backs off to 120 s).
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    return grpc.aio.insecure_channel(channel_target(address), options=options)


def service_name(descriptor: Any, name: str) -> str:
    """The full gRPC name of service ``name`` of a generated ``*_pb2`` module's DESCRIPTOR."""
    return str(descriptor.services_by_name[name].full_name)


async def health_status(channel: grpc.aio.Channel, service: str = "", deadline_s: float = 1.0) -> str:
    """The health status name (SERVING, NOT_SERVING, ...) or UNAVAILABLE when unreachable."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        return "UNAVAILABLE" if exc.code() != grpc.StatusCode.NOT_FOUND else "SERVICE_UNKNOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
