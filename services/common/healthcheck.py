"""Health probe for containers and scripts: exit status 0 only when the target is healthy.

    python -m services.common.healthcheck grpc HOST:PORT [SERVICE]   # standard grpc.health.v1 Check
    python -m services.common.healthcheck http URL                   # any 2xx

It prints one line on stderr (what Docker keeps in ``docker inspect`` health logs) and nothing else.
"""

import argparse
import asyncio
import http.client
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

import grpc

from services.common.grpc_client import health_status

TIMEOUT_S = 2.0


async def grpc_probe(target: str, service: str = "", timeout_s: float = TIMEOUT_S) -> str:
    """The health status name of ``service`` at ``target`` (SERVING, NOT_SERVING, UNAVAILABLE, ...)."""
    # A probe must reach the target itself: an http(s)_proxy in the environment would hijack it.
    options = [("grpc.enable_http_proxy", 0)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        return await health_status(channel, service, timeout_s)


def http_probe(url: str, timeout_s: float = TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, what was seen): healthy only for a 2xx answer within the timeout."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return False, "not an http(s) URL"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy, as above
    try:
        with opener.open(url, timeout=timeout_s) as reply:
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except urllib.error.URLError as exc:
        return False, f"unreachable ({exc.reason})"
    except TimeoutError:
        return False, f"no answer within {timeout_s:g} s (timed out)"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"failed ({exc!r})"
    return 200 <= status < 300, f"HTTP {status}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.healthcheck", description="Exit 0 only if the target is healthy."
    )
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds (default: %(default)s)")
    modes = parser.add_subparsers(dest="mode", required=True)
    grpc_mode = modes.add_parser("grpc", help="standard gRPC health Check; healthy when SERVING")
    grpc_mode.add_argument("target", help="HOST:PORT")
    grpc_mode.add_argument("service", nargs="?", default="", help="health service name ('' = whole server)")
    http_mode = modes.add_parser("http", help="HTTP GET; healthy on any 2xx")
    http_mode.add_argument("url")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.mode == "grpc":
        status = asyncio.run(grpc_probe(args.target, args.service, args.timeout))
        healthy = status == "SERVING"
        line = f"grpc {args.target} {args.service or '(server)'}: {status}"
    else:
        healthy, seen = http_probe(args.url, args.timeout)
        line = f"http {args.url}: {seen}"
    sys.stderr.write(line + "\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
