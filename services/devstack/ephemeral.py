"""Throwaway stacks for benchmarks and tests: a temp folder, free ports, stopped on exit."""

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from services.devstack.checks import free_port
from services.devstack.config import StackSettings
from services.devstack.launcher import Stack

__all__ = ["environment", "ephemeral_settings", "ephemeral_stack", "free_port"]


def ephemeral_settings(
    base: Path, load_demo: bool, replicas: Mapping[str, int] | None = None
) -> StackSettings:
    """``replicas``: replicas per service (``{"embedder": 2}``), 1 each by default."""
    counts = replicas or {}
    return StackSettings(
        run_dir=base / "run",
        data_dir=base / "data",
        load_demo=load_demo,
        detectors=counts.get("detector", 1),
        embedders=counts.get("embedder", 1),
        gateways=counts.get("gateway", 1),
        gateway_port=free_port(),
        detector_port=free_port(),
        embedder_port=free_port(),
        indexer_port=free_port(),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )


@contextmanager
def ephemeral_stack(load_demo: bool = False, replicas: Mapping[str, int] | None = None) -> Iterator[Stack]:
    """The whole stack up and ready in a temp folder; everything stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vs-stack-") as tmp:
        stack = Stack(ephemeral_settings(Path(tmp), load_demo, replicas))
        try:
            stack.up()
            yield stack
        finally:
            stack.down()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Sets environment variables for the block (a stack started inside passes them on to its
    services) and restores the previous values afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
