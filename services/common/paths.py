"""Files addressed by untrusted relative paths (URL paths), confined to one folder."""

from pathlib import Path


def file_under(root: Path, relative: str) -> Path | None:
    """The regular file at ``relative`` inside ``root``, or None. resolve() follows ".." and
    symlinks, so whatever lands outside ``root`` is treated as missing, like a missing file."""
    base = root.resolve()
    target = (base / relative).resolve()
    return target if target.is_relative_to(base) and target.is_file() else None
