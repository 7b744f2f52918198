"""bench/detector_inputs: the detector's input shapes, their cost and what they find.

For photos of a YOLO-layout dataset (``DATASET/images/<split>/*.jpg`` with ``DATASET/labels/<split>/
*.txt`` boxes, e.g. COCO128), at their own size and shrunk to smaller long sides, it compares the
model's own square input with the default shapes (rectangles for non-square photos, the small
square for small photos: services/detector/inputs.py): recall of the large objects (over 5 % of
the photo, IoU >= 0.5, same class) and the CPU time of a detection, single-threaded, measured
photo by photo with both settings in turn. Prints a table and writes JSON.

    bench/detector_inputs DATASET [--quick] [--sizes 0,400,320,224] [--limit N] [--json OUT]
"""

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from bench.perfkit import RESULTS, ROOT, bench_logging, measured, render_table
from services.detector.model import YoloDetector
from services.detector.postprocess import box_iou

log = logging.getLogger("bench.detector_inputs")
MODELS = Path(os.environ.get("VS_MODELS_DIR", ROOT.parent / "shared" / "models"))
MODEL = "yolov8n_fp32_from_int8.onnx"
LARGE = 0.05  # an object counts when its box covers this share of the photo


def ground_truth(
    label_file: Path, width: int, height: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int_]]:
    """YOLO label rows (class, cx, cy, w, h; normalised) -> (K, 4) xyxy pixel boxes, (K,) classes."""
    text = label_file.read_text() if label_file.is_file() else ""
    rows = np.array([line.split() for line in text.splitlines() if line.strip()], dtype=np.float64)
    rows = rows.reshape(-1, 5)
    centres, sizes = rows[:, 1:3] * [width, height], rows[:, 3:5] * [width, height]
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1), rows[:, 0].astype(int)


def shrunk(photo: Image.Image, long_side: int) -> Image.Image:
    """The photo with its long side at ``long_side`` (0 or larger than the photo: as it is)."""
    if not long_side or long_side >= max(photo.size):
        return photo
    ratio = long_side / max(photo.size)
    size = (max(1, round(photo.width * ratio)), max(1, round(photo.height * ratio)))
    return photo.resize(size, Image.Resampling.BILINEAR)


def measure(
    detector: YoloDetector, pixels: npt.NDArray[np.uint8], truth: Any, classes: Any
) -> tuple[int, float]:
    """(large objects found, CPU seconds of the detection)."""
    started = time.thread_time()
    found = detector.detect(pixels, max_detections=100)
    cpu = time.thread_time() - started
    boxes = np.array([[d.x1, d.y1, d.x2, d.y2] for d in found]).reshape(-1, 4)
    same_class = classes[:, np.newaxis] == np.array([d.class_id for d in found])[np.newaxis]
    return int(((box_iou(truth, boxes) > 0.5) & same_class).any(axis=1).sum()), cpu


def run(dataset: Path, sizes: Sequence[int], limit: int) -> dict[str, Any]:
    photos = sorted(dataset.glob("images/*/*.jpg"))[: limit or None]
    if not photos:
        raise SystemExit(f"no images/<split>/*.jpg under {dataset}")
    detectors = {
        "square": YoloDetector(MODELS / MODEL, threads=1, rect_sides=(), small_size=0),
        "default": YoloDetector(MODELS / MODEL, threads=1),
    }
    for detector in detectors.values():
        detector.warmup()
    rows = []
    for long_side in sizes:
        found = dict.fromkeys(detectors, 0)
        cpu = dict.fromkeys(detectors, 0.0)
        total = 0
        for photo_path in photos:
            photo = shrunk(Image.open(photo_path).convert("RGB"), long_side)
            label_file = photo_path.parents[2] / "labels" / photo_path.parent.name / f"{photo_path.stem}.txt"
            truth, classes = ground_truth(label_file, photo.width, photo.height)
            large = np.prod(truth[:, 2:] - truth[:, :2], axis=1) > LARGE * photo.width * photo.height
            pixels = np.asarray(photo, dtype=np.uint8)
            total += int(large.sum())
            for name, detector in detectors.items():
                hits, seconds = measure(detector, pixels, truth[large], classes[large])
                found[name] += hits
                cpu[name] += seconds
        for name in detectors:
            rows.append(
                {
                    "long_side": long_side or "as is",
                    "inputs": name,
                    "photos": len(photos),
                    "large_objects": total,
                    "found": found[name],
                    "recall": round(found[name] / max(total, 1), 3),
                    "cpu_ms_per_photo": round(1000 * cpu[name] / len(photos), 1),
                }
            )
        log.info("long side %s done", long_side or "as is")
    return {
        "dataset": str(dataset),
        "model": MODEL,
        "canvases": _canvases(detectors["default"]),
        "rows": rows,
    }


def _canvases(detector: YoloDetector) -> dict[str, list[str]]:
    return {str(size): [f"{h}x{w}" for h, w in shapes] for size, shapes in detector.canvases.items()}


def table(result: dict[str, Any]) -> str:
    headers = ["photo long side", "inputs", "large objects", "found", "recall", "CPU ms/photo"]
    rows = [
        [
            r["long_side"],
            r["inputs"],
            r["large_objects"],
            r["found"],
            f"{r['recall']:.3f}",
            r["cpu_ms_per_photo"],
        ]
        for r in result["rows"]
    ]
    return render_table(headers, rows, "detector inputs: the model's square vs the default shapes")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/detector_inputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a YOLO-layout folder: images/<split>/, labels/<split>/")
    parser.add_argument("--sizes", default="0,400,320,224", help="photo long sides (0 = as it is)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos")
    parser.add_argument("--quick", action="store_true", help="16 photos, as they are and at 224 px")
    parser.add_argument("--json", type=Path, default=RESULTS / "detector_inputs.json")
    args = parser.parse_args(argv)
    bench_logging()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.quick:
        sizes, args.limit = [0, 224], 16
    result, path = measured(
        "detector_inputs", args.quick, args.json, lambda: run(args.dataset, sizes, args.limit)
    )
    print(table(result))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
