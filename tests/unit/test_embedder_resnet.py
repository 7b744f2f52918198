"""The resnet50 manifest entry end to end, on a tiny random-weight graph with ResNet50's signature.

Real ResNet50 weights are not available offline; the graph below has the same input, output name
and 2048-d pooled output, so everything but the weights is the production code path.
"""

import json
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from services.embedder.manifest import ManifestError, file_sha256, load_manifest, resolve_model
from services.embedder.model import OnnxEmbedder
from services.embedder.preprocess import build_batch

PATCH = 16  # a strided conv keeps the test graph small: 224 / 16 = 14x14 positions
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)  # torchvision, 0..1 units
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


Head = Literal["flatten", "pooled", "reshape"]


class TinyResNet:
    """input [N,3,224,224] -> Conv(3->2048) -> GlobalAveragePool -> head -> features.

    Heads: "flatten" gives a static [N,2048]; "pooled" leaves [N,2048,1,1]; "reshape" to [N,-1]
    hides the dim from shape inference, so the service must find it with a probe run.
    """

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weight = rng.standard_normal((2048, 3, PATCH, PATCH)).astype(np.float32) * 0.05
        self.bias = rng.standard_normal(2048).astype(np.float32) * 0.1

    def save(self, path: Path, head: Head = "flatten", batch: int | str = "N") -> Path:
        conv = helper.make_node(
            "Conv", ["input", "w", "b"], ["conv"], kernel_shape=[PATCH] * 2, strides=[PATCH] * 2
        )
        nodes = [conv, helper.make_node("GlobalAveragePool", ["conv"], ["pooled"])]
        initializers = [numpy_helper.from_array(self.weight, "w"), numpy_helper.from_array(self.bias, "b")]
        output_shape: list[int | str] = [batch, 2048]
        if head == "flatten":
            nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
        elif head == "pooled":
            nodes.append(helper.make_node("Identity", ["pooled"], ["features"]))
            output_shape = [batch, 2048, 1, 1]
        else:
            initializers.append(numpy_helper.from_array(np.array([-1], np.int64), "minus_one"))
            nodes += [
                helper.make_node("Shape", ["pooled"], ["batch"], end=1),
                helper.make_node("Concat", ["batch", "minus_one"], ["new_shape"], axis=0),
                helper.make_node("Reshape", ["pooled", "new_shape"], ["features"]),
            ]
            output_shape = [batch, "D"]
        graph = helper.make_graph(
            nodes,
            "resnet50_signature",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 224, 224])],
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, output_shape)],
            initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return path

    def reference(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """numpy conv + global average pool: the mean of a linear map is the map of the patch mean."""
        n = tensor.shape[0]
        patches = tensor.reshape(n, 3, 224 // PATCH, PATCH, 224 // PATCH, PATCH).mean(axis=(2, 4))
        features = np.einsum("ncpq,kcpq->nk", patches, self.weight) + self.bias  # (N, 2048)
        return np.asarray(features / np.linalg.norm(features, axis=1, keepdims=True), dtype=np.float32)


def write_manifest(directory: Path, model_file: Path, sha256: str) -> Path:
    """A manifest whose `resnet50` entry is the packaged one with this file and hash."""
    entry = load_manifest().get("resnet50").model_dump(exclude={"name"}, exclude_none=True)
    entry.update(file=str(model_file), sha256=sha256)
    path = directory / "models.toml"
    path.write_text(
        "[resnet50]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())
    )
    return path


def load(tmp_path: Path, model_file: Path) -> OnnxEmbedder:
    manifest = load_manifest(write_manifest(tmp_path, model_file, file_sha256(model_file)))
    return OnnxEmbedder(resolve_model(manifest.get("resnet50"), tmp_path))


def torchvision_tensor(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Resize(256) + CenterCrop(224) + ToTensor + Normalize, written out independently."""
    height, width = image.shape[:2]
    new_h, new_w = (256, int(256 * width / height)) if height <= width else (int(256 * height / width), 256)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = round((new_h - 224) / 2), round((new_w - 224) / 2)
    crop = resized[top : top + 224, left : left + 224].astype(np.float32) / 255.0  # (224, 224, 3)
    return (crop.transpose(2, 0, 1)[np.newaxis] - IMAGENET_MEAN) / IMAGENET_STD  # (1, 3, 224, 224)


@pytest.mark.parametrize("head", ["flatten", "pooled", "reshape"])
def test_resnet50_entry_reads_dim_and_normalises(tmp_path: Path, head: Head) -> None:
    model_file = TinyResNet().save(tmp_path / "tiny.onnx", head)
    graph_dim = (
        ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]).get_outputs()[0].shape[1]
    )
    assert isinstance(graph_dim, str) == (head == "reshape")  # the probe-run path is really exercised
    embedder = load(tmp_path, model_file)
    assert embedder.dim == 2048  # from the graph's shape, or from a probe run when it is dynamic
    assert embedder.model_id == f"resnet50@{file_sha256(tmp_path / 'tiny.onnx')[:12]}"
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (256, 320, 3), dtype=np.uint8) for _ in range(3)]
    vectors = embedder.embed(build_batch(images, embedder.preprocessing))
    assert vectors.shape == (3, 2048)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_torchvision_normalisation_reaches_the_model(tmp_path: Path) -> None:
    tiny = TinyResNet()
    embedder = load(tmp_path, tiny.save(tmp_path / "tiny.onnx"))
    # Shorter side already 256: the resize is the identity, so the comparison is exact.
    image = np.random.default_rng(2).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    served = embedder.embed(build_batch([image], embedder.preprocessing))
    np.testing.assert_allclose(served, tiny.reference(torchvision_tensor(image)), atol=1e-4)


def test_fixed_batch_graphs_are_run_in_chunks(tmp_path: Path) -> None:
    tiny = TinyResNet()
    embedder = load(tmp_path, tiny.save(tmp_path / "b1.onnx", batch=1))
    tensor = np.random.default_rng(3).standard_normal((3, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(embedder.embed(tensor), tiny.reference(tensor), atol=1e-4)


def test_sha256_mismatch_refuses_to_load(tmp_path: Path) -> None:
    model_file = TinyResNet().save(tmp_path / "tiny.onnx")
    pinned = TinyResNet(seed=1).save(tmp_path / "other.onnx")
    manifest = load_manifest(write_manifest(tmp_path, model_file, file_sha256(pinned)))
    with pytest.raises(ManifestError, match=r"sha256 mismatch for model 'resnet50'.*refusing"):
        resolve_model(manifest.get("resnet50"), tmp_path)
