"""Brings the stack up as plain processes: Redis, detector, embedder, indexer, gateway, an ingest
worker, demo catalog. Detectors, embedders and gateways may run as several replicas
(services/devstack/replicas.py); the gateways and the worker get every replica's address."""

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

import httpx

from services.devstack.checks import StackError, free_port, grpc_serving, require_free_port
from services.devstack.config import StackSettings
from services.devstack.demo import import_demo
from services.devstack.procs import Proc, ProcessTable
from services.devstack.redis_server import ensure_redis
from services.devstack.replicas import Replica, ReplicaFile, plan_replicas, reserved_ports, service_of

log = logging.getLogger(__name__)

GRPC_SERVICES = {
    "detector": "visualsearch.v1.Detector",
    "embedder": "visualsearch.v1.Embedder",
    "indexer": "visualsearch.v1.Indexer",
}
ALL_SERVICES = (*GRPC_SERVICES, "gateway")
WORKER = "scraper"  # the stack's ingest worker (all stages); more can be started with start_worker
WORKER_START_S = 1.0  # how long a new worker must stay up to count as started
READY_POLL_S = 0.1  # readiness polls while starting; short, so start-up times are not rounded up


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.procs = ProcessTable(settings.run_dir)
        self.replica_file = ReplicaFile(settings.run_dir)
        self._replicas: dict[str, Replica] | None = None
        # Seconds from the start of up() until each service (and redis, the worker) was ready.
        self.ready_s: dict[str, float] = {}

    # ---- replicas, addresses and environment ----------------------------------------------
    @property
    def replicas(self) -> dict[str, Replica]:
        """Every service process by name: the running stack's plan, or the settings' one."""
        if self._replicas is None:
            self._replicas = self.replica_file.load() or self._plan()
        return self._replicas

    def _plan(self) -> dict[str, Replica]:
        ports = {name: int(getattr(self.settings, f"{name}_port")) for name in ALL_SERVICES}
        reserved = reserved_ports(self.settings.redis_url, os.environ)
        return plan_replicas(ports, self.settings.replica_counts, free_port, reserved)

    def replicas_of(self, name: str) -> list[Replica]:
        """The replica ``name``, or every replica of service ``name``."""
        if name in self.replicas:
            return [self.replicas[name]]
        found = [r for r in self.replicas.values() if r.service == name]
        if not found:
            raise StackError(f"no service or replica named {name!r}")
        return found

    def port(self, name: str) -> int:
        """A replica's port; a service's configured one (its first replica's)."""
        return self.replicas_of(name)[0].port

    def address(self, name: str) -> str:
        """``host:port`` of a replica; of a service, all its replicas' (``host:p1,host:p2``)."""
        return ",".join(f"{self.settings.host}:{r.port}" for r in self.replicas_of(name))

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://{self.settings.host}:{r.port}" for r in self.replicas_of("gateway")]

    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            VS_MODELS_DIR=str(s.models_dir),
            VS_DATA_DIR=str(s.data_dir),
            VS_REDIS_URL=s.redis_url,
            VS_GATEWAY_DETECTOR_ADDR=self.address("detector"),
            VS_GATEWAY_EMBEDDER_ADDR=self.address("embedder"),
            VS_GATEWAY_INDEXER_ADDR=self.address("indexer"),
            VS_GATEWAY_MEDIA_DIR=str(s.datasets_dir),
            # onnxruntime would otherwise try to persist a telemetry device id under $HOME.
            ORT_DISABLE_TELEMETRY="1",
            # The dev stack fetches its demo feed and test images from loopback, and nothing else
            # that is not public (no private networks, no cloud metadata); production allows none.
            VS_FETCH_ALLOW=env.get("VS_FETCH_ALLOW", "127.0.0.0/8,::1,localhost"),
            VS_SCRAPER_EMBEDDER_ADDR=self.address("embedder"),
            VS_SCRAPER_INDEXER_ADDR=self.address("indexer"),
            VS_SCRAPER_GATEWAY_URL=s.gateway_url,
            # The worker reads the gateway's /media/ files (the demo feed's images) from disk:
            # an HTTP round trip per image cost the stack as much CPU as the rest of the fetch.
            VS_SCRAPER_LOCAL_MEDIA=env.get(
                "VS_SCRAPER_LOCAL_MEDIA", json.dumps({f"{s.gateway_url}/media/": str(s.datasets_dir)})
            ),
        )
        for name in ALL_SERVICES:
            env[f"VS_{name.upper()}_HOST"] = s.host
            env[f"VS_{name.upper()}_PORT"] = str(self.port(name))
        return env

    def replica_env(self, replica: Replica) -> dict[str, str]:
        env = self.env()
        prefix = f"VS_{replica.service.upper()}_"
        env[f"{prefix}PORT"] = str(replica.port)
        if replica.metrics_port:
            env[f"{prefix}METRICS_PORT"] = str(replica.metrics_port)
        return env

    def python(self) -> str:
        return self.settings.python or sys.executable

    # ---- lifecycle ----------------------------------------------------------------------
    def running(self) -> dict[str, Proc]:
        return {n: p for n, p in self.procs.load().items() if self.procs.alive(p)}

    def up(self) -> None:
        if self.running():
            raise StackError(f"a stack is already running from {self.settings.run_dir}; run ./scripts/down")
        started = time.monotonic()
        self.ready_s = {}
        self._replicas = self._plan()
        self.replica_file.save(self._replicas)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_inputs()
        self.ensure_redis()
        self.ready_s["redis"] = time.monotonic() - started
        # All at once: the gateway connects to its backends lazily and its /readyz waits for them,
        # so its own start-up (imports, app) overlaps the models loading instead of following it.
        for name in ALL_SERVICES:
            self.start_service(name)
        self.wait_all_ready(list(self.replicas), started)
        self.start_worker(WORKER)
        self.ready_s["worker"] = time.monotonic() - started
        if self.settings.load_demo:
            self.load_demo()

    def start_service(self, name: str) -> list[Proc]:
        """Starts a replica, or every replica of a service, on its planned ports."""
        procs = []
        for replica in self.replicas_of(name):
            require_free_port(self.settings.host, replica.port, replica.name)
            cmd = [self.python(), "-m", f"services.{replica.service}"]
            procs.append(self.procs.spawn(replica.name, cmd, self.replica_env(replica)))
        return procs

    def start_worker(self, name: str, stages: Sequence[str] = ()) -> Proc:
        """Starts an ingest worker process named ``name`` running ``stages`` (default: all).

        Workers of a stage share its queue, so extra ones (``start_worker("embed-2", ["embed"])``)
        add throughput; ``down`` stops them all.
        """
        if name in self.running():
            raise StackError(f"a process named {name!r} is already running")
        cmd = [self.python(), "-m", "services.scraper", "worker"]
        if stages:
            cmd += ["--stages", ",".join(stages)]
        env = self.env()
        if name != WORKER and env.get("VS_SCRAPER_METRICS_PORT", "0") not in ("", "0"):
            env["VS_SCRAPER_METRICS_PORT"] = str(free_port())  # the first worker holds the set one
        proc = self.procs.spawn(name, cmd, env)
        deadline = time.monotonic() + WORKER_START_S
        while time.monotonic() < deadline:  # a bad setting or stage makes it exit at once
            if not self.procs.alive(proc):
                raise StackError(
                    f"worker {name} exited at start-up; its log ends with:\n{self.procs.tail(proc)}"
                )
            time.sleep(0.1)
        return proc

    def wait_ready(self, name: str) -> None:
        """Waits for a replica, or every replica of a service."""
        self.wait_all_ready([r.name for r in self.replicas_of(name)], time.monotonic())

    def wait_all_ready(self, names: list[str], started: float) -> None:
        """Polls every service in ``names`` each round until all are ready; records when each was
        (seconds since ``started``, in :attr:`ready_s`). Fails as soon as one exits."""
        procs = self.procs.load()
        waiting = list(names)
        deadline = time.monotonic() + self.settings.start_timeout_s
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                if not self.procs.alive(procs[name]):
                    raise StackError(
                        f"{name} exited during start-up; its log ends with:\n{self.procs.tail(procs[name])}"
                    )
                if service_of(name) == "gateway" and {service_of(w) for w in waiting} & set(GRPC_SERVICES):
                    continue  # its /readyz needs the backends: asking now would only cost CPU
                if self._is_ready(self.replicas[name]):
                    self.ready_s[name] = time.monotonic() - started
                    log.info("%s ready on %s%s", name, self.address(name), _metrics(self.replicas[name]))
                    waiting.remove(name)
            if waiting:
                time.sleep(READY_POLL_S)
        if waiting:
            logs = ", ".join(procs[n].log_file for n in waiting)
            raise StackError(
                f"{', '.join(waiting)} not ready after {self.settings.start_timeout_s:.0f}s; see {logs}"
            )

    def _is_ready(self, replica: Replica) -> bool:
        address = f"{self.settings.host}:{replica.port}"
        if replica.service == "gateway":
            try:
                return httpx.get(f"http://{address}/readyz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False
        return asyncio.run(grpc_serving(address, GRPC_SERVICES[replica.service])) == "SERVING"

    def stop_service(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stops a replica, every replica of a service, or any other process (a worker) by name."""
        names = [r.name for r in self.replicas_of(name)] if service_of(name) in ALL_SERVICES else [name]
        for replica_name in names:
            self.procs.stop(replica_name, sig)

    def down(self) -> None:
        procs = self.procs.load()
        if not procs:
            log.info("nothing to stop in %s", self.settings.run_dir)
        for name in sorted(procs, key=_stop_rank):
            self.procs.stop(name)
        self.replica_file.remove()
        self._replicas = None

    # ---- Redis and the demo catalog --------------------------------------------------------
    def ensure_redis(self) -> None:
        """Uses a Redis already answering at VS_REDIS_URL, or starts a local redis-server there."""
        ensure_redis(self.settings, self.procs)

    def load_demo(self) -> None:
        """Imports the demo catalog through the ingest pipeline (services/devstack/demo.py)."""
        import_demo(self.settings, self.python(), self.env())

    def _check_inputs(self) -> None:
        if not self.settings.models_dir.is_dir():
            raise StackError(f"models directory {self.settings.models_dir} not found (set VS_MODELS_DIR)")
        if self.settings.load_demo and not self.settings.datasets_dir.is_dir():
            raise StackError(f"datasets directory {self.settings.datasets_dir} not found")


def _stop_rank(name: str) -> int:
    """Gateways and ingest workers (any other name) first, so no call reaches a stopping backend;
    Redis last."""
    order = ("gateway", *GRPC_SERVICES, "redis")
    service = service_of(name)
    return order.index(service) if service in order else 0


def _metrics(replica: Replica) -> str:
    return f" (metrics :{replica.metrics_port})" if replica.metrics_port else ""
