"""``visualsearch models``: list the weights the manifest expects, and fetch them verified by sha256."""

import argparse
import logging
import sys
from pathlib import Path

from services.common.settings import load_settings
from services.embedder.manifest import Manifest, ManifestError, load_manifest
from services.models.config import ModelsSettings
from services.models.fetch import FetchError, FetchPolicy, fetch_file
from services.models.targets import Target, bare_target, entry_target, statuses

log = logging.getLogger("visualsearch.models")

FETCH_EPILOG = """\
examples:
  visualsearch models fetch NAME
      a manifest entry with a pinned url and sha256
  visualsearch models fetch resnet50 --url URL --sha256 HEX
      an entry that pins neither (resnet50 ships unpinned: no public ONNX of it can be vouched
      for); the file lands under the entry's `file` name in the models dir
  visualsearch models fetch --url URL --sha256 HEX --output yolov8n.onnx
      any other file, e.g. detector weights; then set VS_DETECTOR_MODEL=yolov8n.onnx

YOLO detector weights:
  The detector loads a file (VS_DETECTOR_MODEL), not a manifest entry. Ultralytics publishes
  PyTorch weights (yolov8n.pt, https://github.com/ultralytics/assets/releases), not ONNX; the
  official ONNX is an export of them, made once on a machine with torch:
      pip install '.[export]'
      yolo export model=yolov8n.pt format=onnx imgsz=640
      sha256sum yolov8n.onnx
  Host yolov8n.onnx where deployments can reach it (object store, internal web server) and
  fetch it on every host with the hash you recorded:
      visualsearch models fetch --url https://HOST/yolov8n.onnx --sha256 HEX --output yolov8n.onnx
  YOLOv8 weights are AGPL-3.0 (Ultralytics); YOLOX-Nano (Apache-2.0, VS_DETECTOR_DECODER=yolox)
  is the permissive alternative.

Downloads stream into <file>.part and resume it after an interruption (HTTP Range; a server that
ignores ranges restarts from 0), retry network errors, timeouts and 5xx with exponential back-off,
and install the file (atomic rename) only when its sha256 matches. A mismatch deletes the download
and exits 1. Unverified downloads are refused: a hash always comes from the manifest or --sha256.

settings: VS_MODELS_DIR (default ./models), VS_EMBEDDER_MANIFEST (default: the packaged one),
VS_FETCH_ATTEMPTS (5), VS_FETCH_BACKOFF_S (1.0, doubled per retry), VS_FETCH_TIMEOUT_S (30,
per connect/read); HTTPS_PROXY, NO_PROXY and SSL_CERT_FILE are honoured.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visualsearch models", description="Model weights for real deployments."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,fetch}")
    listing = sub.add_parser(
        "list",
        help="show every manifest entry: file, present, sha256 check",
        description="Every manifest entry with its file, whether it is in the models dir, and whether "
        'its sha256 matches the pinned one ("unpinned" when the manifest pins none).',
    )
    _common(listing)
    listing.set_defaults(handler=_list)
    fetch = sub.add_parser(
        "fetch",
        help="download weights into the models dir, verified by sha256",
        description="Download a manifest entry's weights (or any file by --url) into the models dir.",
        epilog=FETCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument(
        "name", nargs="?", metavar="NAME", help="manifest entry; omit it to fetch a bare --url"
    )
    _common(fetch)
    fetch.add_argument("--url", help="http(s) URL to download from (default: the entry's url)")
    fetch.add_argument(
        "--sha256", metavar="HEX", help="expected sha256 (required when the manifest pins none)"
    )
    fetch.add_argument(
        "--output", metavar="FILE", help="file name in the models dir, or a path (default: the entry's file)"
    )
    fetch.add_argument("--force", action="store_true", help="download again from byte 0 even if present")
    fetch.set_defaults(handler=_fetch)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="PATH",
        help="models.toml (default: $VS_EMBEDDER_MANIFEST or packaged)",
    )
    parser.add_argument(
        "--models-dir", type=Path, metavar="DIR", help="weights folder (default: $VS_MODELS_DIR)"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request adds nothing here
    settings = load_settings(ModelsSettings)
    try:
        return int(args.handler(args, settings))
    except (FetchError, ManifestError) as exc:
        log.error("error: %s", exc)
    except OSError as exc:
        log.error("error: %s: %s", exc.filename or "I/O", exc.strerror or exc)
    except KeyboardInterrupt:
        log.error("interrupted; run the same command again to resume the download")
        return 130
    return 1


def _manifest(args: argparse.Namespace, settings: ModelsSettings) -> Manifest:
    return load_manifest(args.manifest or settings.manifest)


def _models_dir(args: argparse.Namespace, settings: ModelsSettings) -> Path:
    return Path(args.models_dir or settings.models_dir)


def _list(args: argparse.Namespace, settings: ModelsSettings) -> int:
    rows = [("NAME", "PRESENT", "SHA256", "URL", "FILE")]
    for status in statuses(_manifest(args, settings), _models_dir(args, settings)):
        present = "yes" if status.present else "no"
        url = "pinned" if status.entry.url else "-"
        rows.append((status.entry.name, present, status.check, url, str(status.path)))
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]) + "\n")
    return 0


def _fetch(args: argparse.Namespace, settings: ModelsSettings) -> int:
    target = _target(args, settings)
    policy = FetchPolicy(
        attempts=settings.attempts, backoff_s=settings.backoff_s, timeout_s=settings.timeout_s
    )
    result = fetch_file(target.url, target.path, target.sha256, policy=policy, force=args.force)
    if args.name and not target.pinned:
        log.info(
            'to pin these weights, set in the manifest\'s [%s] table: url = "%s" and sha256 = "%s"',
            target.label,
            target.url,
            result.sha256,
        )
    sys.stdout.write(f"{result.path}\n")  # the one stdout line, for scripts: path=$(visualsearch ...)
    return 0


def _target(args: argparse.Namespace, settings: ModelsSettings) -> Target:
    models_dir = _models_dir(args, settings)
    if args.name is None:
        return bare_target(args.url, args.sha256, args.output, models_dir)
    return entry_target(_manifest(args, settings), args.name, models_dir, args.url, args.sha256, args.output)
