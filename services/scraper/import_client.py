"""``visualsearch import FEED``: posts a feed to the gateway, follows the job with a live progress
bar, then prints a summary and the first errors.

Exit codes: 0 the job completed and every item made it; 2 it completed but some items failed or
some feed rows were rejected; 1 the job failed (or could not be submitted or followed).
"""

import argparse
import logging
import mimetypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from services.scraper.config import ScraperSettings

log = logging.getLogger("visualsearch")

FINAL = frozenset({"completed", "failed"})
MAX_POLL_FAILURES = 20  # consecutive; the gateway may restart while a long import runs
SHOWN_ERRORS = 20


class ImportFailed(Exception):
    """The feed could not be submitted, or the job could not be followed."""


@dataclass(frozen=True)
class ImportOptions:
    format: str = "auto"
    mode: str = "upsert"
    source: str | None = None
    refresh_interval_s: int | None = None

    def form(self) -> dict[str, str]:
        values = {
            "format": self.format,
            "mode": self.mode,
            "source": self.source,
            "refresh_interval_s": self.refresh_interval_s,
        }
        return {k: str(v) for k, v in values.items() if v is not None}


def add_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser(
        "import", help="import a catalog feed (CSV/JSONL file or URL) through the gateway"
    )
    parser.add_argument("feed", help="a feed file, or an http(s) URL the ingest workers fetch")
    parser.add_argument("--gateway", help="gateway base URL (default: $VS_SCRAPER_GATEWAY_URL)")
    parser.add_argument("--format", choices=("auto", "csv", "jsonl"), default="auto")
    parser.add_argument(
        "--mode", choices=("upsert", "sync"), default="upsert", help="sync: delete what the feed dropped"
    )
    parser.add_argument("--source", help="the products' source name (default: the feed URL or file name)")
    parser.add_argument(
        "--refresh-interval", type=int, metavar="S", help="re-import a feed URL every S seconds"
    )
    parser.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    parser.add_argument("--poll", type=float, default=0.5, metavar="S", help="status poll interval")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    options = ImportOptions(args.format, args.mode, args.source, args.refresh_interval)
    settings = ScraperSettings()
    with httpx.Client(
        base_url=args.gateway or settings.gateway_url,
        timeout=settings.request_timeout_s,
        headers=settings.gateway_headers,
    ) as client:
        return run_import(client, args.feed, options, wait=not args.no_wait, poll_s=args.poll)


def run_import(
    client: httpx.Client,
    feed: str,
    options: ImportOptions,
    wait: bool = True,
    poll_s: float = 0.5,
    progress: bool = True,
) -> int:
    started = time.monotonic()
    try:
        job_id = submit(client, feed, options)
    except ImportFailed as exc:
        log.error("%s", exc)
        return 1
    log.info("import job %s queued", job_id)
    if not wait:
        log.info("follow it at %s/v1/imports/%s", client.base_url, job_id)
        return 0
    try:
        job = follow(client, job_id, poll_s, progress)
    except ImportFailed as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.info("stopped following; the import goes on: %s/v1/imports/%s", client.base_url, job_id)
        return 130
    return summarize(client, job, time.monotonic() - started)


def submit(client: httpx.Client, feed: str, options: ImportOptions) -> str:
    try:
        if feed.startswith(("http://", "https://")):
            reply = client.post("/v1/imports", data={**options.form(), "feed_url": feed})
        else:
            path = Path(feed)
            if not path.is_file():
                raise ImportFailed(f"no such feed file: {feed}")
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            with path.open("rb") as fh:
                reply = client.post(
                    "/v1/imports", data=options.form(), files={"feed": (path.name, fh, content_type)}
                )
    except httpx.HTTPError as exc:
        raise ImportFailed(f"cannot reach the gateway at {client.base_url}: {exc}") from None
    if reply.status_code != 202:
        raise ImportFailed(f"the gateway refused the import (HTTP {reply.status_code}): {_detail(reply)}")
    return str(reply.json()["job_id"])


def follow(client: httpx.Client, job_id: str, poll_s: float, progress: bool = True) -> dict[str, Any]:
    """Polls the job until it is over (sync deletions included), showing a progress bar."""
    failures = 0
    with tqdm(total=0, unit="item", desc=f"import {job_id[:8]}", disable=not progress) as bar:
        while True:
            try:
                job = _status(client, job_id)
                failures = 0
            except ImportFailed:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise
                time.sleep(poll_s)
                continue
            _show(bar, job)
            if job["status"] in FINAL and job.get("sync") != "pending":
                return job
            time.sleep(poll_s)


def _status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    try:
        reply = client.get(f"/v1/imports/{job_id}")
    except httpx.HTTPError as exc:
        raise ImportFailed(f"lost the gateway while following job {job_id}: {exc}") from None
    if reply.status_code != 200:
        raise ImportFailed(f"GET /v1/imports/{job_id} answered HTTP {reply.status_code}: {_detail(reply)}")
    job: dict[str, Any] = reply.json()
    return job


def _show(bar: "tqdm[Any]", job: dict[str, Any]) -> None:
    # The total grows while the feed is read; it is final once the job is expanded.
    bar.total = job["total"]
    bar.n = job["done"] + job["skipped"] + job["failed"]
    postfix = {k: job[k] for k in ("done", "skipped", "failed")}
    if job["invalid_rows"]:
        postfix["invalid_rows"] = job["invalid_rows"]
    bar.set_postfix(postfix, refresh=False)
    bar.refresh()


def summarize(client: httpx.Client, job: dict[str, Any], elapsed_s: float) -> int:
    finished = job["done"] + job["skipped"] + job["failed"]
    rate = job.get("rate_per_s") or (finished / elapsed_s if elapsed_s > 0 else 0.0)
    log.info(
        "import %s %s in %.1fs: %d items (%d done, %d skipped, %d failed), %d invalid rows, %.1f items/s",
        job["job_id"],
        job["status"],
        elapsed_s,
        job["total"],
        job["done"],
        job["skipped"],
        job["failed"],
        job["invalid_rows"],
        rate,
    )
    if job.get("message"):
        log.log(logging.ERROR if job["status"] == "failed" else logging.INFO, "  %s", job["message"])
    if job["failed"] or job["invalid_rows"]:
        _show_errors(client, job["job_id"], job["failed"] + job["invalid_rows"])
    if job["status"] == "failed":
        return 1
    return 2 if job["failed"] or job["invalid_rows"] else 0


def _show_errors(client: httpx.Client, job_id: str, count: int) -> None:
    try:
        reply = client.get(f"/v1/imports/{job_id}/errors", params={"limit": SHOWN_ERRORS})
        errors = reply.json()["errors"] if reply.status_code == 200 else []
    except (httpx.HTTPError, ValueError, KeyError):
        errors = []
    log.info("first errors (%d of %d; all at /v1/imports/%s/errors):", min(len(errors), count), count, job_id)
    for error in errors:
        where = f"line {error['row']} " if error.get("row") else ""
        what = error.get("product_id") or "(no product_id)"
        log.info("  %s%s: [%s/%s] %s", where, what, error["stage"], error["code"], error["message"])


def _detail(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("detail", reply.text))
    except ValueError:
        return reply.text[:500]
