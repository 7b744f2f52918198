"""``python -m services.devstack up|down|status``: the stack as plain processes (see ./scripts/up)."""

import argparse
import logging
import signal
import sys
import threading

from services.devstack.checks import StackError
from services.devstack.config import StackSettings
from services.devstack.launcher import Stack
from services.devstack.replicas import MAX_REPLICAS, SCALABLE

log = logging.getLogger("devstack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything, load the demo catalog, wait until ready")
    up.add_argument("--detach", action="store_true", help="return once ready, leave the stack running")
    up.add_argument("--no-demo", action="store_true", help="do not load the demo catalog")
    for service in SCALABLE:
        up.add_argument(
            f"--{service}s",
            type=_replicas,
            default=None,
            metavar="N",
            help=f"{service} replicas (default 1, or VS_STACK_{service.upper()}S)",
        )
    sub.add_parser("down", help="stop everything this launcher started")
    sub.add_parser("status", help="list the running processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polls are not news

    overrides = {f"{s}s": getattr(args, f"{s}s") for s in SCALABLE if getattr(args, f"{s}s", None)}
    settings = StackSettings(**overrides)
    if getattr(args, "no_demo", False):
        settings.load_demo = False
    stack = Stack(settings)
    if args.command == "down":
        stack.down()
        return 0
    if args.command == "status":
        for name, proc in stack.running().items():
            port = f"port {stack.port(name)}" if name in stack.replicas else ""
            log.info("%-11s pid %-7d %-10s log %s", name, proc.pid, port, proc.log_file)
        return 0
    return _up(stack, detach=args.detach)


def _replicas(value: str) -> int:
    count = int(value)
    if not 1 <= count <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"between 1 and {MAX_REPLICAS}, not {count}")
    return count


def _up(stack: Stack, detach: bool) -> int:
    try:
        stack.up()
    except (StackError, KeyboardInterrupt) as exc:
        log.error("start-up failed: %s", exc or "interrupted")
        stack.down()
        return 1
    url = stack.settings.gateway_url
    log.info("\nvisualsearch is ready: %s  (API docs: %s/docs)", url, url)
    if len(stack.gateway_urls) > 1:  # stateless: put any HTTP load balancer in front of them
        log.info("gateways: %s", "  ".join(stack.gateway_urls))
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
