import json
from pathlib import Path
from typing import Any

import pytest

from services.embedder.manifest import (
    ManifestError,
    ModelEntry,
    file_sha256,
    load_manifest,
    parse_manifest,
    resolve_model,
)

VALID: dict[str, Any] = {
    "file": "model.onnx",
    "sha256": "",
    "input": "input",
    "output": "embedding",
    "resize_shorter": 256,
    "crop": 224,
    "mean": [127.5, 127.5, 127.5],
    "std": [127.5, 127.5, 127.5],
    "licence": "Apache-2.0",
}


def toml_entry(name: str, **overrides: Any) -> str:
    """One manifest table; JSON scalars and arrays are valid TOML values."""
    fields = {**VALID, **overrides}
    lines = [f"{key} = {json.dumps(value)}" for key, value in fields.items() if value is not None]
    return f"[{name}]\n" + "\n".join(lines) + "\n"


def test_packaged_manifest_has_the_three_backbones() -> None:
    manifest = load_manifest()
    assert set(manifest.entries) == {"mobilenetv2-features", "mobilenetv2-features-int8", "resnet50"}
    default = manifest.get("mobilenetv2-features")
    assert default.file == "mobilenetv2_features_fp32.onnx"
    assert default.sha256.startswith("e69b04dfa63c")
    assert default.preprocessing.mean == (127.5, 127.5, 127.5)
    resnet = manifest.get("resnet50")
    assert (resnet.input, resnet.output, resnet.dim, resnet.sha256) == ("input", "features", 2048, "")
    assert resnet.mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))
    assert resnet.std == pytest.approx((0.229 * 255, 0.224 * 255, 0.225 * 255))


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ManifestError, match=r"unknown model 'resnet-50'.*known models: .*resnet50"):
        load_manifest().get("resnet-50")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"crop": None}, r"model 'm': crop: required field is missing"),
        ({"licence": None, "file": None}, r"file: required field is missing; licence: required"),
        ({"mean": [0.5, 0.5]}, r"mean: needs 3 values \(one per channel.*got 2"),
        ({"std": [1, 1, 1, 1]}, r"std: needs 3 values .*got 4"),
        ({"std": [1, 0, 1]}, r"std: every std value must be > 0"),
        ({"resize_shorter": 200}, r"resize_shorter \(200\) must be >= crop \(224\)"),
        ({"sha256": "abc"}, r"sha256: String should match pattern"),
        ({"channel_order": "RGBA"}, r"channel_order: Input should be 'RGB' or 'BGR'"),
        ({"dims": 1280}, r"dims: unknown field"),
    ],
)
def test_invalid_entries_fail_with_the_field_and_the_reason(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(toml_entry("m", **overrides), "test.toml")


def test_structural_errors() -> None:
    with pytest.raises(ManifestError, match="not valid TOML"):
        parse_manifest("[m\nfile = 1")
    with pytest.raises(ManifestError, match="defines no models"):
        parse_manifest("")
    with pytest.raises(ManifestError, match=r"'default' must be a table"):
        parse_manifest('default = "m"\n' + toml_entry("m"))
    with pytest.raises(ManifestError, match="cannot read model manifest"):
        load_manifest(Path("/nonexistent/models.toml"))


def test_manifest_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(toml_entry("a") + toml_entry("b", channel_order="BGR", dim=512))
    manifest = load_manifest(path)
    assert manifest.get("b").dim == 512
    assert manifest.get("b").preprocessing.bgr
    assert not manifest.get("a").preprocessing.bgr


def entry(**overrides: Any) -> ModelEntry:
    return ModelEntry.model_validate({**VALID, "name": "m", **overrides})


def test_resolve_hashes_the_file_and_builds_the_model_id(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"weights")
    resolved = resolve_model(entry(), tmp_path)  # sha256 "" = unchecked, but still hashed for the id
    digest = file_sha256(tmp_path / "model.onnx")
    assert resolved.sha256 == digest
    assert resolved.model_id == f"m@{digest[:12]}"
    pinned = resolve_model(entry(sha256=digest, file=str(tmp_path / "model.onnx")), Path("/elsewhere"))
    assert pinned.path == tmp_path / "model.onnx"  # absolute paths ignore models_dir


def test_sha256_mismatch_refuses_to_load(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"other weights")
    with pytest.raises(ManifestError, match=r"sha256 mismatch for model 'm'.*pins 0{64} .*refusing"):
        resolve_model(entry(sha256="0" * 64), tmp_path)


def test_missing_file_says_where_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"not found at .*model\.onnx \(download it from https://x/m"):
        resolve_model(entry(url="https://x/m.onnx"), tmp_path)
    with pytest.raises(ManifestError, match="no public download is pinned"):
        resolve_model(entry(), tmp_path)
