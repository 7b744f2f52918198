"""The demo catalog, imported through the ingest pipeline as a shop's feed would come in: a CSV
feed whose image URLs point at the gateway's /media/ (the shared datasets)."""

import logging
import subprocess

from services.devstack.checks import StackError
from services.devstack.config import StackSettings
from services.scraper.cli import DEMO_MANIFESTS
from services.scraper.demo_feed import demo_rows, write_feed

log = logging.getLogger(__name__)


def import_demo(settings: StackSettings, python: str, env: dict[str, str]) -> None:
    """Writes the feed into the run dir and imports it with ``visualsearch import`` (POST
    /v1/imports, then the ingest workers), waiting until the job is done."""
    feed = settings.run_dir / "demo-feed.csv"
    with feed.open("w", encoding="utf-8", newline="") as out:
        write_feed(demo_rows(settings.datasets_dir, DEMO_MANIFESTS, f"{settings.gateway_url}/media"), out)
    cmd = [python, "-m", "services.scraper", "import", str(feed), "--source", "demo"]
    cmd += ["--gateway", settings.gateway_url]
    code = subprocess.run(cmd, env=env, check=False).returncode
    if code == 2:
        log.warning("some demo items failed to import (listed above); the rest is searchable")
    elif code != 0:
        raise StackError("importing the demo catalog failed (see the messages above)")
