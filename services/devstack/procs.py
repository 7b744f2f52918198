"""Child processes of the dev stack: start detached, remember them in a state file, stop them for sure."""

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proc:
    name: str
    pid: int
    log_file: str


class ProcessTable:
    """The processes this launcher started, persisted so ``down`` works from another shell."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.state_file = run_dir / "stack.json"
        self.log_dir = run_dir / "logs"

    def load(self) -> dict[str, Proc]:
        if not self.state_file.exists():
            return {}
        raw = json.loads(self.state_file.read_text())
        return {name: Proc(**entry) for name, entry in raw.items()}

    def save(self, procs: dict[str, Proc]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: asdict(p) for n, p in procs.items()}, indent=2))
        os.replace(tmp, self.state_file)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        """Starts ``cmd`` in its own session (so Ctrl-C in the shell reaches only the launcher)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            child = subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, child.pid, str(log_path))
        procs = self.load()
        procs[name] = proc
        self.save(procs)
        log.info("started %-9s pid %d (log: %s)", name, child.pid, log_path)
        return proc

    def alive(self, proc: Proc) -> bool:
        try:
            os.kill(proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(proc.pid)

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        """Signals the process group, waits, then SIGKILLs what is left; forgets the process."""
        procs = self.load()
        proc = procs.pop(name, None)
        if proc is not None:
            _stop_group(proc, sig, timeout_s)
        self.save(procs)

    def tail(self, proc: Proc, lines: int = 30) -> str:
        try:
            return "\n".join(Path(proc.log_file).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _is_zombie(pid: int) -> bool:
    """Exited, only waiting to be reaped. A multi-threaded process whose leader is a zombie while
    other threads still exit is not there yet: it may hold its sockets (ports) until they are gone."""
    try:
        leader_exited = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
        return leader_exited and len(list(Path(f"/proc/{pid}/task").iterdir())) <= 1
    except (OSError, IndexError):
        return False


def _signal_group(pid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pid, sig)  # children run in their own session: pgid == pid
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: Proc, sig: signal.Signals, timeout_s: float) -> None:
    if not _signal_group(proc.pid, sig):
        return
    if _wait_gone(proc.pid, timeout_s):
        log.info("stopped %s (pid %d)", proc.name, proc.pid)
        return
    log.warning("%s (pid %d) did not stop in %.1fs; killing it", proc.name, proc.pid, timeout_s)
    _signal_group(proc.pid, signal.SIGKILL)
    # SIGKILL is not instant either: the kernel still has to tear the processes down.
    if not _wait_gone(proc.pid, 10.0):
        log.error("%s (pid %d) survived SIGKILL", proc.name, proc.pid)


def _wait_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pgid)
        if not _group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader of an otherwise empty group still answers killpg; it is gone for our purposes.
    return not _is_zombie(pgid) or _other_members(pgid)


def _other_members(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and int(stat.parent.name) != pgid and fields[0] != "Z":
            return True
    return False


def _reap(pid: int) -> None:
    """Collects the exit status when the process is our own child (avoids zombies in tests)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
