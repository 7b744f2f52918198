"""Channel targets and service configs of services.common.grpc_client (no network, no DNS)."""

import json

import pytest
from pydantic import BaseModel, ValidationError

from services.common.grpc_client import (
    EVERY_METHOD,
    GrpcAddress,
    channel_target,
    service_config,
    split_endpoints,
)

HOSTS = {
    "localhost": ["::1", "127.0.0.1"],
    "embedder-a": ["10.0.0.5"],
    "embedder-b": ["10.0.0.6", "10.0.0.7"],
    "v6-only": ["fd00::1"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in HOSTS:
        raise ValueError(f"cannot resolve replica host {host!r}")
    return HOSTS[host]


def target(address: str) -> str:
    return channel_target(address, fake_resolver)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:50052", "embedder:50052", "dns:///embedder:50052", "ipv4:10.0.0.1:1,10.0.0.2:1", "unix:/s"],
)
def test_one_address_or_a_grpc_uri_is_left_to_grpc(address: str) -> None:
    assert target(address) == address


def test_a_local_replica_list_becomes_one_static_ipv4_target() -> None:
    assert target("127.0.0.1:50052,127.0.0.1:21001") == "ipv4:127.0.0.1:50052,127.0.0.1:21001"


def test_names_are_resolved_and_ipv4_is_preferred_when_every_replica_has_it() -> None:
    assert target("localhost:1,localhost:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert target("embedder-a:50052, embedder-b:50052") == (
        "ipv4:10.0.0.5:50052,10.0.0.6:50052,10.0.0.7:50052"
    )


def test_ipv6_replicas_get_an_ipv6_target() -> None:
    assert target("[::1]:1,[::1]:2") == "ipv6:[::1]:1,[::1]:2"
    assert target("v6-only:7,localhost:8") == "ipv6:[fd00::1]:7,[::1]:8"


def test_duplicates_are_dropped() -> None:
    assert target("127.0.0.1:1,127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"


def test_mixed_families_and_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="mix IPv4-only and IPv6-only"):
        target("embedder-a:1,v6-only:2")
    with pytest.raises(ValueError, match="cannot resolve replica host 'nowhere'"):
        target("embedder-a:1,nowhere:2")


@pytest.mark.parametrize(
    ("address", "bad"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1:50052,", ""),
        ("host:1,host", "host"),
        ("host:0", "host:0"),
        ("host:70000", "host:70000"),
        ("host:port", "host:port"),
        ("::1:50052", "::1:50052"),
        ("http://host:1", "http://host:1"),
    ],
)
def test_every_element_must_be_host_port(address: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"{bad!r} is not host:port"):
        split_endpoints(address)


def test_settings_validate_address_lists() -> None:
    class Settings(BaseModel):
        addr: GrpcAddress

    assert Settings(addr="detector:50051,detector:50061").addr == "detector:50051,detector:50061"
    assert Settings(addr="dns:///detector:50051").addr == "dns:///detector:50051"
    with pytest.raises(ValidationError, match="'detector' is not host:port"):
        Settings(addr="detector:50051,detector")


def test_service_config_health_checks_and_retries_only_idempotent_methods() -> None:
    config = json.loads(service_config("visualsearch.v1.Indexer", ("Get", "Search")))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "visualsearch.v1.Indexer"}
    (method,) = config["methodConfig"]
    assert method["name"] == [
        {"service": "visualsearch.v1.Indexer", "method": "Get"},
        {"service": "visualsearch.v1.Indexer", "method": "Search"},
    ]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert "retryThrottling" in config


def test_every_method_and_no_retries() -> None:
    every = json.loads(service_config("visualsearch.v1.Embedder", EVERY_METHOD))
    assert every["methodConfig"][0]["name"] == [{"service": "visualsearch.v1.Embedder"}]
    reads_only = json.loads(service_config("visualsearch.v1.Embedder"))
    assert "methodConfig" not in reads_only
    assert "retryThrottling" not in reads_only
    probe = json.loads(service_config())
    assert probe == {"loadBalancingConfig": [{"round_robin": {}}]}  # NOT_SERVING stays readable
