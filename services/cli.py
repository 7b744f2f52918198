"""The ``visualsearch`` command (installed by pyproject's console script)."""

import sys

from services.scraper.cli import main as scraper_main


def main() -> None:
    sys.exit(scraper_main())
