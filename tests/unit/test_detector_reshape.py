"""The YOLOv8 export rewritten for other input shapes: same weights, recomputed head constants."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from services.detector.reshape import UnsupportedGraph, anchors, at_shape, input_shape
from tests.paths import MODELS

YOLO = MODELS / "yolov8n_fp32_from_int8.onnx"


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(str(YOLO))


def test_the_anchors_are_the_ones_the_export_baked_in(model: onnx.ModelProto) -> None:
    centres, strides = anchors(640, 640)
    assert (centres.shape, strides.shape) == ((1, 2, 8400), (1, 8400))
    baked = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.array_equal(baked["/model.22/Constant_12_output_0"], centres)
    assert np.array_equal(baked["/model.22/Constant_15_output_0"], strides)
    # Stride 8's grid first, row by row: (0.5, 0.5), (1.5, 0.5), ...; stride 32's last.
    assert centres[0, :, :2].T.tolist() == [[0.5, 0.5], [1.5, 0.5]]
    assert strides[0, [0, 6399, 6400, 8000, 8399]].tolist() == [8, 8, 16, 32, 32]


@pytest.mark.parametrize(
    ("height", "width", "anchors_n"), [(480, 640, 6300), (640, 384, 5040), (320, 320, 2100)]
)
def test_a_reshaped_model_runs_at_its_shape(
    model: onnx.ModelProto, height: int, width: int, anchors_n: int
) -> None:
    reshaped = at_shape(model, height, width)
    assert input_shape(reshaped) == (height, width)
    assert input_shape(model) == (640, 640)  # the original is untouched
    session = ort.InferenceSession(reshaped.SerializeToString(), providers=["CPUExecutionProvider"])
    tensor = np.full((1, 3, height, width), 114 / 255, dtype=np.float32)
    (output,) = session.run(None, {"images": tensor})
    assert output.shape == (1, 84, anchors_n)
    # Decoded boxes sit on the new grid: an anchor's box centre is near its cell's centre.
    centres, strides = anchors(height, width)
    offset = np.abs(output[0, :2] - centres[0] * strides)  # (2, N) pixels
    assert np.median(offset) < 8


def test_sides_must_be_multiples_of_the_coarsest_stride(model: onnx.ModelProto) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        at_shape(model, 480, 650)
    with pytest.raises(ValueError, match="multiples of 32"):
        at_shape(model, 0, 640)


@pytest.mark.parametrize("name", ["yolox_nano.onnx", "mobilenetv2_features_fp32.onnx"])
def test_other_graphs_are_refused_not_guessed_at(name: str) -> None:
    with pytest.raises(UnsupportedGraph):
        at_shape(onnx.load(str(MODELS / name)), 320, 320)
