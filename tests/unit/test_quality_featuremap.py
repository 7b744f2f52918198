"""The ablation's graph surgery on the real MobileNetV2 files, and its refusals on other graphs."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bench.qualitykit.featuremap import feature_map_model, linear_head
from tests.paths import MODELS

FEATURES = MODELS / "mobilenetv2_features_fp32.onnx"
CLASSIFIER = MODELS / "mobilenetv2_imagenet_fp32.onnx"


def _session(model: bytes | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def test_feature_map_averages_to_the_original_embedding() -> None:
    batch = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    (embedding,) = _session(str(FEATURES)).run(["embedding"], {"input": batch})
    (maps,) = _session(feature_map_model(FEATURES)).run(None, {"input": batch})
    assert maps.shape == (2, 1280, 7, 7)
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), embedding, atol=1e-4)


def test_feature_map_model_takes_any_input_size() -> None:
    session = _session(feature_map_model(FEATURES))
    assert session.get_inputs()[0].shape[2:] == ["height", "width"]
    (maps,) = session.run(None, {"input": np.zeros((1, 3, 320, 256), np.float32)})
    assert maps.shape == (1, 1280, 10, 8)


def test_classifier_head_reproduces_the_logits() -> None:
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    embedding, logits = _session(str(CLASSIFIER)).run(["embedding", "logits"], {"input": batch})
    weight, bias = linear_head(CLASSIFIER, "logits")
    assert weight.shape == (1001, 1280)
    np.testing.assert_allclose(embedding @ weight.T + bias, logits, atol=1e-3)


def test_graph_with_two_outputs_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one graph output"):
        feature_map_model(CLASSIFIER)


def _tiny_graph(tmp_path: Path, last_op: str) -> Path:
    """input (N,3,8,8) -> Relu -> <last_op> -> output: a graph that does not end in pooling."""
    nodes = [helper.make_node("Relu", ["input"], ["act"]), helper.make_node(last_op, ["act"], ["out"])]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_graph_not_ending_in_global_average_pool_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not produced by GlobalAveragePool.*a GlobalMaxPool node"):
        feature_map_model(_tiny_graph(tmp_path, "GlobalMaxPool"))


def test_pooling_without_flatten_is_cut_too(tmp_path: Path) -> None:
    session = _session(feature_map_model(_tiny_graph(tmp_path, "GlobalAveragePool")))
    (maps,) = session.run(None, {"input": np.full((1, 3, 6, 4), -1.0, np.float32)})
    assert maps.shape == (1, 3, 6, 4)
    assert maps.max() == 0.0  # the Relu output, not a pooled value
