"""Replicas of the dev stack's services: names, ports and metrics ports, kept in the run dir.

A service started once runs under its own name on its configured port, exactly as without
replicas. Started N > 1 times, its replicas are ``detector-1`` .. ``detector-N``: the first on the
configured port, the others on free ports, and each with its own free /metrics port (so a
``VS_<SERVICE>_METRICS_PORT`` in the environment can never be bound twice). The plan is written to
``<run dir>/replicas.json`` so ``./scripts/down``, ``status`` and tests in other processes find
every replica.
"""

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

SCALABLE = ("detector", "embedder", "gateway")  # stateless; the indexer holds the catalog
MAX_REPLICAS = 16


@dataclass(frozen=True)
class Replica:
    name: str  # the process name: the service's own when it runs once
    service: str
    port: int
    metrics_port: int = 0  # 0: not set by the launcher (the service's own setting applies)


def replica_names(service: str, count: int) -> list[str]:
    if count < 1:
        raise ValueError(f"{service} needs at least one replica, not {count}")
    return [service] if count == 1 else [f"{service}-{i}" for i in range(1, count + 1)]


def service_of(name: str) -> str:
    """The service a process name belongs to (``embedder-2`` -> ``embedder``); any other name
    (``redis``, a worker's ``embed-2``) is returned as it is."""
    match = re.fullmatch(r"(.+)-\d+", name)
    return match.group(1) if match and match.group(1) in SCALABLE else name


def reserved_ports(redis_url: str, environ: Mapping[str, str]) -> set[int]:
    """Ports the stack will bind that are not service ports: Redis's and any configured /metrics
    port. They are free while the plan is made (nothing listens yet), so a picked port could
    otherwise be one of them, and the second process to bind it would fail to start."""
    ports = {urlsplit(redis_url).port or 6379}
    for key, value in environ.items():
        if key.startswith("VS_") and key.endswith("_METRICS_PORT") and value.strip().isdigit():
            ports.add(int(value))
    return ports - {0}


def plan_replicas(
    ports: Mapping[str, int],
    counts: Mapping[str, int],
    pick_port: Callable[[], int],
    reserved: Iterable[int] = (),
) -> dict[str, Replica]:
    """Every replica of every service in ``ports`` (its configured port), ``counts[service]`` of
    each (default 1); ``pick_port`` gives free ports, never one already planned or ``reserved``."""
    used = set(ports.values()) | set(reserved)

    def fresh() -> int:
        for _ in range(1000):
            port = pick_port()
            if port not in used:
                used.add(port)
                return port
        raise RuntimeError("no unused free port found")

    plan: dict[str, Replica] = {}
    for service, port in ports.items():
        count = counts.get(service, 1)
        if count > 1 and service not in SCALABLE:
            raise ValueError(f"{service} runs once; only {', '.join(SCALABLE)} scale")
        if count > MAX_REPLICAS:
            raise ValueError(f"at most {MAX_REPLICAS} replicas of {service}, not {count}")
        for i, name in enumerate(replica_names(service, count)):
            plan[name] = Replica(name, service, port if i == 0 else fresh(), fresh() if count > 1 else 0)
    return plan


class ReplicaFile:
    """``replicas.json`` in the run dir: the plan of the stack that runs from it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "replicas.json"

    def load(self) -> dict[str, Replica] | None:
        if not self.path.exists():
            return None
        raw = json.loads(self.path.read_text())
        return {name: Replica(**entry) for name, entry in raw.items()}

    def save(self, plan: Mapping[str, Replica]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: asdict(r) for n, r in plan.items()}, indent=2))
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
