"""End-to-end fixtures: the real stack, started with ./scripts/up on free loopback ports.

Real processes, a private real Redis, the real models of ../shared/models and the demo catalog
of ../shared/datasets. Nothing of ours is mocked.
"""

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.devstack.config import StackSettings
from services.devstack.ephemeral import free_port
from services.devstack.launcher import Stack
from tests.paths import DATASETS, MODELS, ROOT

pytestmark = pytest.mark.e2e


@dataclass
class RunningStack:
    env: dict[str, str]
    stack: Stack
    client: httpx.Client


def private_stack_env(base: Path) -> dict[str, str]:
    """The environment of a stack of its own: run and data dirs under ``base``, free loopback
    ports, a private Redis, the shared models and datasets."""
    env = dict(os.environ)
    env.update(
        VS_STACK_RUN_DIR=str(base / "run"),
        VS_DATA_DIR=str(base / "data"),
        VS_MODELS_DIR=str(MODELS),
        VS_STACK_DATASETS_DIR=str(DATASETS),
        VS_GATEWAY_PORT=str(free_port()),
        VS_STACK_DETECTOR_PORT=str(free_port()),
        VS_STACK_EMBEDDER_PORT=str(free_port()),
        VS_STACK_INDEXER_PORT=str(free_port()),
        VS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        # A killed worker's messages are reclaimed after this idle time; short, so the tests wait less.
        VS_SCRAPER_RECLAIM_IDLE_S="5",
        VS_SCRAPER_RETRY_BASE_S="0.5",
    )
    return env


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return private_stack_env(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
def running(stack_env: dict[str, str]) -> Iterator[RunningStack]:
    """``./scripts/up --detach`` exactly as a newcomer runs it; ``./scripts/down`` afterwards."""
    try:
        up = subprocess.run(
            [str(ROOT / "scripts" / "up"), "--detach"], env=stack_env, timeout=900, check=False
        )
    except BaseException:  # a timeout or an interrupted run must not leave a half-started stack behind
        subprocess.run([str(ROOT / "scripts" / "down")], env=stack_env, timeout=120, check=False)
        raise
    settings = _stack_settings(stack_env)
    stack = Stack(settings)
    if up.returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "down")], env=stack_env, timeout=120, check=False)
        pytest.fail(f"./scripts/up --detach failed with exit code {up.returncode}")
    with httpx.Client(base_url=settings.gateway_url, timeout=60) as client:
        yield RunningStack(stack_env, stack, client)
    pids = [p.pid for p in stack.procs.load().values()]
    subprocess.run([str(ROOT / "scripts" / "down")], env=stack_env, timeout=120, check=True)
    leftovers = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert not leftovers, f"processes left behind after ./scripts/down: {leftovers}"


def _stack_settings(env: dict[str, str]) -> StackSettings:
    """The launcher's settings as ./scripts/up saw them, to restart single services in tests."""
    return StackSettings(
        run_dir=Path(env["VS_STACK_RUN_DIR"]),
        data_dir=Path(env["VS_DATA_DIR"]),
        models_dir=Path(env["VS_MODELS_DIR"]),
        datasets_dir=Path(env["VS_STACK_DATASETS_DIR"]),
        gateway_port=int(env["VS_GATEWAY_PORT"]),
        detector_port=int(env["VS_STACK_DETECTOR_PORT"]),
        embedder_port=int(env["VS_STACK_EMBEDDER_PORT"]),
        indexer_port=int(env["VS_STACK_INDEXER_PORT"]),
        redis_url=env["VS_REDIS_URL"],
    )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True
