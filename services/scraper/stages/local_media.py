"""Image URLs whose files are on this machine: read from disk instead of downloaded.

The dev stack's gateway serves the shared datasets at ``/media/`` and the demo feed points there
(``VS_SCRAPER_LOCAL_MEDIA={"http://127.0.0.1:8080/media/": "../shared/datasets"}``). An HTTP round
trip through the gateway cost about as much CPU per image as the rest of the fetch stage, for
the same bytes. Anything that is not a regular file under a mount (a missing file, a path escaping
the folder, a URL with a query, a file over the size limit) is downloaded as usual, so its errors
are exactly the server's.
"""

import logging
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.common.paths import file_under

log = logging.getLogger(__name__)


class LocalMedia:
    """URL prefix -> folder mounts; :meth:`read` gives a URL's bytes when a mount has the file."""

    def __init__(self, mounts: dict[str, Path], max_bytes: int) -> None:
        self.mounts = [(prefix, folder.resolve()) for prefix, folder in mounts.items() if prefix]
        self.max_bytes = max_bytes
        for prefix, folder in self.mounts:
            if not folder.is_dir():
                log.warning(
                    "local media folder %s (for %s) does not exist; downloading instead", folder, prefix
                )

    def path(self, url: str) -> Path | None:
        """The file behind ``url``, or None (not under a mount, or not a regular file there)."""
        for prefix, root in self.mounts:
            if not url.startswith(prefix):
                continue
            parts = urlsplit(url)
            if parts.query or parts.fragment:
                return None  # a server may answer a query differently from the plain file
            return file_under(root, unquote(url[len(prefix) :]))
        return None

    def read(self, url: str) -> bytes | None:
        """The bytes of ``url``'s local file, or None to download it. Blocking, on purpose: a
        catalog image is read from the page cache in microseconds, cheaper than a thread hop."""
        target = self.path(url)
        if target is None:
            return None
        try:
            if target.stat().st_size > self.max_bytes:
                return None  # the download reports too_large with the usual message
            return target.read_bytes()
        except OSError:
            return None
