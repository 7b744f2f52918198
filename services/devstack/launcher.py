"""Brings the stack up as plain processes: Redis, detector, embedder, indexer, gateway, an ingest
worker, demo catalog."""

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlparse

import httpx

from services.devstack.checks import StackError, grpc_serving, redis_ping, require_free_port
from services.devstack.config import StackSettings
from services.devstack.procs import Proc, ProcessTable
from services.scraper.cli import DEMO_MANIFESTS
from services.scraper.demo_feed import demo_rows, write_feed

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
        # Seconds from the start of up() until each service (and redis, the worker) was ready.
        self.ready_s: dict[str, float] = {}

    # ---- addresses and environment -------------------------------------------------------
    def port(self, name: str) -> int:
        return int(getattr(self.settings, f"{name}_port"))

    def address(self, name: str) -> str:
        return f"{self.settings.host}:{self.port(name)}"

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
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_inputs()
        self.ensure_redis()
        self.ready_s["redis"] = time.monotonic() - started
        # All at once: the gateway connects to its backends lazily and its /readyz waits for them,
        # so its own start-up (imports, app) overlaps the models loading instead of following it.
        for name in ALL_SERVICES:
            self.start_service(name)
        self.wait_all_ready(list(ALL_SERVICES), started)
        self.start_worker(WORKER)
        self.ready_s["worker"] = time.monotonic() - started
        if self.settings.load_demo:
            self.load_demo()

    def start_service(self, name: str) -> Proc:
        require_free_port(self.settings.host, self.port(name), name)
        return self.procs.spawn(name, [self.python(), "-m", f"services.{name}"], self.env())

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
        proc = self.procs.spawn(name, cmd, self.env())
        deadline = time.monotonic() + WORKER_START_S
        while time.monotonic() < deadline:  # a bad setting or stage makes it exit at once
            if not self.procs.alive(proc):
                raise StackError(
                    f"worker {name} exited at start-up; its log ends with:\n{self.procs.tail(proc)}"
                )
            time.sleep(0.1)
        return proc

    def wait_ready(self, name: str) -> None:
        self.wait_all_ready([name], time.monotonic())

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
                if name == "gateway" and set(waiting) & set(GRPC_SERVICES):
                    continue  # its /readyz needs the backends: asking now would only cost CPU
                if self._is_ready(name):
                    self.ready_s[name] = time.monotonic() - started
                    log.info("%s ready on %s", name, self.address(name))
                    waiting.remove(name)
            if waiting:
                time.sleep(READY_POLL_S)
        if waiting:
            logs = ", ".join(procs[n].log_file for n in waiting)
            raise StackError(
                f"{', '.join(waiting)} not ready after {self.settings.start_timeout_s:.0f}s; see {logs}"
            )

    def _is_ready(self, name: str) -> bool:
        if name == "gateway":
            try:
                return httpx.get(f"{self.settings.gateway_url}/readyz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False
        return asyncio.run(grpc_serving(self.address(name), GRPC_SERVICES[name])) == "SERVING"

    def stop_service(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        self.procs.stop(name, sig)

    def down(self) -> None:
        procs = self.procs.load()
        if not procs:
            log.info("nothing to stop in %s", self.settings.run_dir)
        for name in sorted(procs, key=_stop_rank):
            self.procs.stop(name)

    # ---- Redis and the demo catalog --------------------------------------------------------
    def ensure_redis(self) -> None:
        """Uses a Redis already answering at VS_REDIS_URL, or starts a local redis-server there."""
        if redis_ping(self.settings.redis_url):
            log.info("using the Redis already running at %s", self.settings.redis_url)
            return
        url = urlparse(self.settings.redis_url)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise StackError(f"Redis at {self.settings.redis_url} is not reachable")
        server = shutil.which("redis-server")
        if server is None:
            raise StackError("redis-server is not installed (./scripts/up installs it with apt-get)")
        redis_dir = self.settings.run_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        port = url.port or 6379
        require_free_port("127.0.0.1", port, "redis")
        cmd = [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        self.procs.spawn("redis", cmd, dict(os.environ))
        deadline = time.monotonic() + 20
        while not redis_ping(self.settings.redis_url):
            if time.monotonic() > deadline:
                raise StackError(f"redis-server did not answer on port {port}")
            time.sleep(0.1)
        log.info("redis ready on %s", self.settings.redis_url)

    def load_demo(self) -> None:
        """Imports the demo catalog through the ingest pipeline, as a shop's feed would come in:
        a CSV feed whose image URLs point at the gateway's /media/ (the shared datasets)."""
        feed = self.settings.run_dir / "demo-feed.csv"
        with feed.open("w", encoding="utf-8", newline="") as out:
            rows = demo_rows(self.settings.datasets_dir, DEMO_MANIFESTS, f"{self.settings.gateway_url}/media")
            write_feed(rows, out)
        cmd = [self.python(), "-m", "services.scraper", "import", str(feed), "--source", "demo"]
        cmd += ["--gateway", self.settings.gateway_url]
        code = subprocess.run(cmd, env=self.env(), check=False).returncode
        if code == 2:
            log.warning("some demo items failed to import (listed above); the rest is searchable")
        elif code != 0:
            raise StackError("importing the demo catalog failed (see the messages above)")

    def _check_inputs(self) -> None:
        if not self.settings.models_dir.is_dir():
            raise StackError(f"models directory {self.settings.models_dir} not found (set VS_MODELS_DIR)")
        if self.settings.load_demo and not self.settings.datasets_dir.is_dir():
            raise StackError(f"datasets directory {self.settings.datasets_dir} not found")


def _stop_rank(name: str) -> int:
    """Gateway and ingest workers (any other name) first, so no call reaches a stopping backend;
    Redis last."""
    order = ("gateway", *GRPC_SERVICES, "redis")
    return order.index(name) if name in order else 0
