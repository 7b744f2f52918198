"""The YOLO detector: an onnxruntime session plus the pre/post-processing its model family needs."""

import ast
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from services.detector.config import DetectorSettings
from services.detector.inputs import build_sessions, input_canvases
from services.detector.postprocess import (
    BoolArray,
    Candidates,
    FloatArray,
    decode_yolov8,
    decode_yolox,
    postprocess,
    yolox_grid,
)
from services.detector.preprocess import Letterboxed, choose_input, letterbox
from services.detector.sessions import LoadAwareSession, Model

log = logging.getLogger(__name__)

Decoder = Literal["yolov8", "yolox"]
DecodeFn = Callable[[FloatArray, float], Candidates]

# How each family was trained: YOLOv8 sees RGB in 0..1, YOLOX sees BGR in raw 0..255 (MODELS.md §1, §3).
_INPUT_FORMAT: dict[str, tuple[bool, float]] = {"yolov8": (False, 1.0 / 255.0), "yolox": (True, 1.0)}
# Per output row: YOLOv8 has 4 box values before the class scores, YOLOX 4 box values and objectness.
_ROW_PREFIX: dict[str, int] = {"yolov8": 4, "yolox": 5}


class ModelConfigError(ValueError):
    """The model, its labels or the class allow-list do not fit together (found at start-up)."""


@dataclass(frozen=True)
class Detection:
    x1: float  # source-image pixels
    y1: float
    x2: float
    y2: float
    label: str
    class_id: int
    confidence: float


class YoloDetector:
    """Loads once; then :meth:`detect` may be called from several threads at once (onnxruntime
    sessions run concurrently, and the pre- and post-processing are pure functions)."""

    def __init__(
        self,
        model_path: Path,
        *,
        decoder: Decoder = "yolov8",
        labels_path: Path | None = None,
        classes: Sequence[str] = (),
        threads: int = 2,
        concurrent_threads: int = 1,
        spin_wait: bool = False,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 20,
        rect_sides: Sequence[int] = (384, 480),
        small_size: int = 416,
    ) -> None:
        if not model_path.is_file():
            raise FileNotFoundError(f"detector model file not found: {model_path}")
        self.model_path = model_path
        self.model_id = model_id(model_path)
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self._sessions = LoadAwareSession(model_path, threads, concurrent_threads, spin_wait)
        session = self._sessions.session
        model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]
        self._input_name, self._output_name = model_input.name, model_output.name
        metadata: Mapping[str, str] = session.get_modelmeta().custom_metadata_map
        self.input_size = _input_size(model_input.shape, metadata)
        self.labels = read_labels(metadata, labels_path)
        _check_class_count(decoder, model_output.shape, len(self.labels))
        self._allowed = allow_mask(self.labels, classes)
        self._bgr, self._scale = _INPUT_FORMAT[decoder]
        self._decode = _decoder(decoder, self.input_size)
        size = self.input_size
        # YOLOX decodes with a grid of its own input size: it keeps that one shape.
        wanted = (
            input_canvases(size, rect_sides, small_size) if decoder == "yolov8" else {size: [(size, size)]}
        )

        def make(model: Model) -> LoadAwareSession:
            return LoadAwareSession(model, threads, concurrent_threads, spin_wait, self._sessions.counter)

        self.canvases, self._by_shape = build_sessions(self._sessions, model_path, wanted, make)
        log.info(
            "loaded %s (%s decoder, inputs %s, %d labels)",
            self.model_id,
            decoder,
            ", ".join(f"{h}x{w}" for h, w in self._by_shape),
            len(self.labels),
        )

    @classmethod
    def from_settings(cls, settings: DetectorSettings) -> "YoloDetector":
        return cls(
            settings.model_path,
            decoder=settings.decoder,
            labels_path=settings.labels_path,
            classes=settings.classes,
            threads=settings.threads,
            concurrent_threads=settings.concurrent_threads,
            spin_wait=settings.spin_wait,
            conf_threshold=settings.conf_threshold,
            iou_threshold=settings.iou_threshold,
            max_detections=settings.max_detections,
            rect_sides=settings.rect_sides,
            small_size=settings.small_size,
        )

    @property
    def allowed_labels(self) -> list[str]:
        """The labels the detector may return: the allow-list in model order, or every label."""
        if self._allowed is None:
            return list(self.labels)
        return [label for label, ok in zip(self.labels, self._allowed, strict=True) if ok]

    def warmup(self) -> None:
        """A throw-away run per input shape, so no request pays for allocator and kernel set-up."""
        square = (self.input_size, self.input_size)
        self.detect(np.full((*square, 3), 114, dtype=np.uint8))  # pre- and post-processing too
        for height, width in self._by_shape:
            if (height, width) != square:  # the detect above ran that one
                self.infer(np.zeros((1, 3, height, width), dtype=np.float32))

    def detect(
        self,
        pixels: npt.NDArray[np.uint8],
        conf_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> list[Detection]:
        """(H, W, 3) RGB uint8 -> detections in image pixels, most confident first."""
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 pixels, got {pixels.shape} {pixels.dtype}")
        height, width = pixels.shape[:2]
        boxed = self.preprocess(pixels)
        output = self.infer(boxed.tensor)
        candidates = self._decode(output, self.conf_threshold if conf_threshold is None else conf_threshold)
        kept = postprocess(
            candidates,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections if max_detections is None else max_detections,
            ratio=boxed.ratio,
            pad=boxed.pad,
            image_size=(width, height),
            allowed=self._allowed,
        )
        return [
            Detection(x1, y1, x2, y2, self.labels[class_id], class_id, score)
            for (x1, y1, x2, y2), score, class_id in zip(
                kept.boxes.tolist(), kept.scores.tolist(), kept.class_ids.tolist(), strict=True
            )
        ]

    def preprocess(self, pixels: npt.NDArray[np.uint8]) -> Letterboxed:
        """(H, W, 3) RGB uint8 -> the letterboxed (1, 3, H', W') model input and its geometry, on the
        smallest input shape that holds the photo (:func:`choose_input`)."""
        size, canvas = choose_input(pixels.shape[0], pixels.shape[1], self.canvases)
        return letterbox(pixels, size, canvas=canvas, bgr=self._bgr, scale=self._scale)

    def infer(self, tensor: FloatArray) -> FloatArray:
        """The bare model run: (1, 3, H', W') input -> raw output (benches time it on its own)."""
        sessions = self._by_shape[(tensor.shape[2], tensor.shape[3])]
        return sessions.run(self._output_name, {self._input_name: tensor})


def model_id(path: Path) -> str:
    """``<file stem>-<first 8 hex of sha256>``: names the exact weights, so vectors are traceable."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.stem}-{digest.hexdigest()[:8]}"


def read_labels(metadata: Mapping[str, str], labels_path: Path | None) -> list[str]:
    """Class names from the Ultralytics ``names`` metadata (a dict literal), else from the labels file."""
    if names := metadata.get("names"):
        try:
            parsed = ast.literal_eval(names)
        except (ValueError, SyntaxError) as exc:
            raise ModelConfigError(f"model metadata `names` is not a Python literal: {exc}") from exc
        if isinstance(parsed, dict) and sorted(parsed) == list(range(len(parsed))):
            return [str(parsed[i]) for i in range(len(parsed))]
        raise ModelConfigError("model metadata `names` is not a {0: name, 1: name, ...} mapping")
    if labels_path is None or not labels_path.is_file():
        raise ModelConfigError(
            f"the model has no `names` metadata and the labels file {labels_path} is missing"
        )
    labels = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        raise ModelConfigError(f"the labels file {labels_path} is empty")
    return labels


def allow_mask(labels: Sequence[str], classes: Sequence[str]) -> BoolArray | None:
    """(C,) mask of the allowed classes, or None to allow every class. Unknown names are an error."""
    if not classes:
        return None
    index = {label: i for i, label in enumerate(labels)}
    unknown = [name for name in classes if name not in index]
    if unknown:
        raise ModelConfigError(
            f"unknown class names in the allow-list: {', '.join(map(repr, unknown))}; "
            f"the model knows: {', '.join(labels)}"
        )
    mask = np.zeros(len(labels), dtype=np.bool_)
    mask[[index[name] for name in classes]] = True
    return mask


def _input_size(shape: Sequence[Any], metadata: Mapping[str, str]) -> int:
    """The square input side: from a static (1, 3, S, S) input, else Ultralytics ``imgsz`` metadata."""
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        if height != width:
            raise ModelConfigError(f"only square model inputs are supported, got {height}x{width}")
        return height
    if imgsz := metadata.get("imgsz"):
        return int(ast.literal_eval(imgsz)[0])
    raise ModelConfigError(f"model input {shape} has a dynamic size and no `imgsz` metadata")


def _check_class_count(decoder: Decoder, output_shape: Sequence[Any], num_labels: int) -> None:
    # YOLOv8 output is (1, 4 + C, N), YOLOX (1, N, 5 + C): the row width sits on a different axis.
    width = output_shape[1] if decoder == "yolov8" else output_shape[2]
    if isinstance(width, int) and width - _ROW_PREFIX[decoder] != num_labels:
        raise ModelConfigError(
            f"the model output {list(output_shape)} does not fit the {decoder} decoder with {num_labels} labels"
        )


def _decoder(decoder: Decoder, input_size: int) -> DecodeFn:
    if decoder == "yolov8":
        return decode_yolov8
    grid, strides = yolox_grid(input_size)
    return lambda output, conf: decode_yolox(output, conf, grid, strides)
