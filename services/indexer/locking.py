"""Locks: a readers-writer lock for the store, and an exclusive lock on the state dir."""

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StateDirLocked(RuntimeError):
    """Another process holds the state dir."""


class RWLock:
    """Searches run in parallel (FAISS releases the GIL), writes run alone.

    Writer-preferring, so a steady stream of searches cannot starve an upsert. Not reentrant.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not (self._writing or self._writers_waiting))
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                self._cond.wait_for(lambda: not (self._writing or self._readers))
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def lock_dir(state_dir: Path) -> int:
    """An exclusive lock on the state dir: two indexers on one dir would overwrite each other."""
    fd = os.open(state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateDirLocked(f"the state dir {state_dir} is in use by another indexer") from None
    return fd


def unlock_dir(fd: int | None) -> None:
    """Releases a lock_dir() lock: closing the descriptor drops the flock."""
    if fd is not None:
        os.close(fd)
