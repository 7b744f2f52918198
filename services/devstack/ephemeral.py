"""Throwaway stacks for benchmarks and tests: a temp folder, free ports, stopped on exit."""

import os
import random
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from services.devstack.config import StackSettings
from services.devstack.launcher import Stack


def free_port() -> int:
    """A free loopback port BELOW the kernel's ephemeral range: a port taken from that range
    (bind to 0) can be handed to an outgoing connection after we release it, and a service
    restarted later would then find its own port taken."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(20000, min(low, 32768)), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def ephemeral_settings(base: Path, load_demo: bool) -> StackSettings:
    return StackSettings(
        run_dir=base / "run",
        data_dir=base / "data",
        load_demo=load_demo,
        gateway_port=free_port(),
        detector_port=free_port(),
        embedder_port=free_port(),
        indexer_port=free_port(),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )


@contextmanager
def ephemeral_stack(load_demo: bool = False) -> Iterator[Stack]:
    """The whole stack up and ready in a temp folder; everything stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vs-stack-") as tmp:
        stack = Stack(ephemeral_settings(Path(tmp), load_demo))
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
