"""The ``visualsearch`` command (installed by pyproject's console script).

``visualsearch models ...`` manages model weights, ``visualsearch keys ...`` the gateway's API keys;
every other command belongs to the scraper CLI, which receives its arguments unchanged.
"""

import sys

from services.gateway.auth.cli import main as keys_main
from services.models.cli import main as models_main
from services.scraper.cli import main as scraper_main

# The scraper CLI's own --help cannot list a command it does not own, so it is added below it.
MODELS_HELP = """
more commands:
  models              list and fetch model weights, verified by sha256 (visualsearch models --help)
  keys                create, list and revoke the gateway's API keys (visualsearch keys --help)
"""


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["models"]:
        sys.exit(models_main(args[1:]))
    if args[:1] == ["keys"]:
        sys.exit(keys_main(args[1:]))
    if args[:1] in (["-h"], ["--help"]):
        try:
            scraper_main(args)
        finally:
            sys.stdout.write(MODELS_HELP)
    sys.exit(scraper_main(args))


if __name__ == "__main__":  # `python -m services.cli ...`, the same as the `visualsearch` script
    main()
