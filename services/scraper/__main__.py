import sys

from services.scraper.cli import main

if __name__ == "__main__":
    sys.exit(main())
