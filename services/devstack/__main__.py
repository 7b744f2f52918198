"""``python -m services.devstack up|down|status``: the stack as plain processes (see ./scripts/up)."""

import argparse
import logging
import signal
import sys
import threading

from services.devstack.checks import StackError
from services.devstack.config import StackSettings
from services.devstack.launcher import Stack

log = logging.getLogger("devstack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything, load the demo catalog, wait until ready")
    up.add_argument("--detach", action="store_true", help="return once ready, leave the stack running")
    up.add_argument("--no-demo", action="store_true", help="do not load the demo catalog")
    sub.add_parser("down", help="stop everything this launcher started")
    sub.add_parser("status", help="list the running processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polls are not news

    settings = StackSettings()
    if getattr(args, "no_demo", False):
        settings.load_demo = False
    stack = Stack(settings)
    if args.command == "down":
        stack.down()
        return 0
    if args.command == "status":
        for name, proc in stack.running().items():
            log.info("%-9s pid %d  log %s", name, proc.pid, proc.log_file)
        return 0
    return _up(stack, detach=args.detach)


def _up(stack: Stack, detach: bool) -> int:
    try:
        stack.up()
    except (StackError, KeyboardInterrupt) as exc:
        log.error("start-up failed: %s", exc or "interrupted")
        stack.down()
        return 1
    url = stack.settings.gateway_url
    log.info("\nvisualsearch is ready: %s  (API docs: %s/docs)", url, url)
    if detach:
        log.info("stop it with ./scripts/down")
        return 0
    log.info("press Ctrl-C to stop")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        dead = [n for n, p in stack.procs.load().items() if not stack.procs.alive(p)]
        if dead:
            log.error(
                "%s exited unexpectedly; stopping the stack (logs in %s)",
                ", ".join(dead),
                stack.procs.log_dir,
            )
            break
    stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
