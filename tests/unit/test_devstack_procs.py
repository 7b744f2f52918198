import os
import signal
import time
from pathlib import Path

from services.devstack.procs import ProcessTable


def test_spawn_stop_and_state_file(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    proc = table.spawn("sleeper", ["sleep", "30"], {"PATH": "/usr/bin:/bin"})
    assert table.alive(proc)
    assert set(ProcessTable(tmp_path).load()) == {"sleeper"}  # visible from another launcher
    table.stop("sleeper")
    assert not table.alive(proc)
    assert table.load() == {}


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    cmd = ["bash", "-c", "trap '' TERM; echo ready; sleep 30 & wait"]
    proc = table.spawn("stubborn", cmd, {"PATH": "/usr/bin:/bin"})
    table.stop("stubborn", signal.SIGTERM, timeout_s=0.5)
    assert not table.alive(proc)


def test_log_tail(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    proc = table.spawn("talker", ["bash", "-c", "echo one; echo two"], {"PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 10
    while table.alive(proc) and time.monotonic() < deadline:
        time.sleep(0.02)
        os.waitpid(proc.pid, os.WNOHANG)
    assert table.tail(proc).splitlines()[-2:] == ["one", "two"]
