import json
from pathlib import Path

import pytest

from services.devstack.checks import StackError
from services.devstack.config import StackSettings
from services.devstack.launcher import Stack
from services.devstack.replicas import plan_replicas, replica_names, reserved_ports, service_of


def stack(tmp_path: Path) -> Stack:
    return Stack(
        StackSettings(run_dir=tmp_path / "run", datasets_dir=tmp_path / "datasets", gateway_port=18080)
    )


def test_the_worker_reads_the_gateways_media_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VS_SCRAPER_LOCAL_MEDIA", raising=False)
    mounts = json.loads(stack(tmp_path).env()["VS_SCRAPER_LOCAL_MEDIA"])
    assert mounts == {"http://127.0.0.1:18080/media/": str(tmp_path / "datasets")}


def test_an_explicit_local_media_setting_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_SCRAPER_LOCAL_MEDIA", "{}")
    assert stack(tmp_path).env()["VS_SCRAPER_LOCAL_MEDIA"] == "{}"


def scaled(tmp_path: Path, detectors: int = 1, embedders: int = 1, gateways: int = 1) -> Stack:
    settings = StackSettings(
        run_dir=tmp_path / "run",
        datasets_dir=tmp_path / "datasets",
        gateway_port=18080,
        detector_port=15051,
        embedder_port=15052,
        indexer_port=15053,
        detectors=detectors,
        embedders=embedders,
        gateways=gateways,
    )
    return Stack(settings)


def test_one_replica_each_is_the_plain_stack(tmp_path: Path) -> None:
    stack = scaled(tmp_path)
    assert list(stack.replicas) == ["detector", "embedder", "indexer", "gateway"]
    assert {r.name: (r.port, r.metrics_port) for r in stack.replicas.values()} == {
        "detector": (15051, 0),
        "embedder": (15052, 0),
        "indexer": (15053, 0),
        "gateway": (18080, 0),
    }
    env = stack.env()
    assert env["VS_GATEWAY_EMBEDDER_ADDR"] == env["VS_SCRAPER_EMBEDDER_ADDR"] == "127.0.0.1:15052"
    assert env["VS_GATEWAY_DETECTOR_ADDR"] == "127.0.0.1:15051"
    assert stack.gateway_urls == ["http://127.0.0.1:18080"]


def test_replicas_are_numbered_and_get_their_own_ports(tmp_path: Path) -> None:
    stack = scaled(tmp_path, detectors=2, embedders=3, gateways=2)
    names = list(stack.replicas)
    assert names == [
        *("detector-1", "detector-2", "embedder-1", "embedder-2", "embedder-3"),
        *("indexer", "gateway-1", "gateway-2"),
    ]
    assert stack.port("detector-1") == stack.port("detector") == 15051  # the first: configured
    assert stack.port("embedder-1") == 15052
    ports = [r.port for r in stack.replicas.values()]
    metrics = [r.metrics_port for r in stack.replicas.values() if r.service != "indexer"]
    assert len(set(ports + metrics)) == len(ports + metrics)  # nothing bound twice
    assert 0 not in metrics
    assert stack.replicas["indexer"].metrics_port == 0


def test_gateways_and_the_worker_get_every_replica(tmp_path: Path) -> None:
    stack = scaled(tmp_path, detectors=2, embedders=2)
    embedders = [f"127.0.0.1:{stack.port(n)}" for n in ("embedder-1", "embedder-2")]
    env = stack.env()
    assert env["VS_GATEWAY_EMBEDDER_ADDR"] == env["VS_SCRAPER_EMBEDDER_ADDR"] == ",".join(embedders)
    assert env["VS_GATEWAY_DETECTOR_ADDR"].count(",") == 1
    assert env["VS_GATEWAY_INDEXER_ADDR"] == "127.0.0.1:15053"
    assert stack.address("embedder-2") == embedders[1]


def test_each_replica_runs_on_its_own_port_and_metrics_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VS_EMBEDDER_METRICS_PORT", "9100")  # would collide if passed to both
    stack = scaled(tmp_path, embedders=2)
    second = stack.replicas["embedder-2"]
    env = stack.replica_env(second)
    assert (env["VS_EMBEDDER_PORT"], env["VS_EMBEDDER_METRICS_PORT"]) == (
        str(second.port),
        str(second.metrics_port),
    )
    first = stack.replica_env(stack.replicas["embedder-1"])
    assert first["VS_EMBEDDER_METRICS_PORT"] != env["VS_EMBEDDER_METRICS_PORT"] != "9100"
    # A service that runs once keeps its own setting, exactly as without replicas.
    assert stack.replica_env(stack.replicas["indexer"])["VS_EMBEDDER_METRICS_PORT"] == "9100"


def test_the_plan_is_kept_in_the_run_dir_for_down_and_tests(tmp_path: Path) -> None:
    stack = scaled(tmp_path, embedders=2)
    stack.replica_file.save(stack.replicas)
    other = Stack(StackSettings(run_dir=tmp_path / "run"))  # e.g. ./scripts/down, no flags
    assert other.replicas == stack.replicas
    assert other.address("embedder") == stack.address("embedder")
    other.down()  # nothing runs: only forgets the plan
    assert not stack.replica_file.path.exists()


def test_names_map_back_to_their_service() -> None:
    assert [service_of(n) for n in ("embedder-2", "gateway-10", "embed-2", "redis", "detector")] == [
        "embedder",
        "gateway",
        "embed-2",
        "redis",
        "detector",
    ]
    assert replica_names("detector", 1) == ["detector"]
    assert replica_names("detector", 3) == ["detector-1", "detector-2", "detector-3"]


def test_only_stateless_services_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="indexer runs once"):
        plan_replicas({"indexer": 1}, {"indexer": 2}, lambda: 2)
    with pytest.raises(StackError, match="no service or replica named 'embedder-3'"):
        scaled(tmp_path, embedders=2).port("embedder-3")


def test_picked_ports_never_repeat_a_planned_one() -> None:
    picks = iter([15051, 20001, 20001, 20002, 20003])
    plan = plan_replicas({"detector": 15051}, {"detector": 2}, lambda: next(picks))
    assert (plan["detector-2"].port, plan["detector-1"].metrics_port) == (20002, 20001)
    assert plan["detector-2"].metrics_port == 20003


def test_picked_ports_avoid_redis_and_configured_metrics_ports() -> None:
    env = {"VS_DETECTOR_METRICS_PORT": "20001", "VS_GATEWAY_METRICS_PORT": "0", "VS_OTHER": "20009"}
    reserved = reserved_ports("redis://127.0.0.1:20002/0", env)
    assert reserved == {20001, 20002}
    assert reserved_ports("redis://localhost/0", {}) == {6379}
    picks = iter([20001, 20002, 20003, 20004, 20005])
    plan = plan_replicas({"detector": 15051}, {"detector": 2}, lambda: next(picks), reserved)
    assert (plan["detector-1"].metrics_port, plan["detector-2"].port) == (20003, 20004)
