from pathlib import Path

import pytest
from pydantic import ValidationError

from services.detector.config import DetectorSettings


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models dir holding a (dummy) default model file, selected through VS_MODELS_DIR."""
    (tmp_path / "yolov8n_fp32_from_int8.onnx").write_bytes(b"onnx")
    monkeypatch.setenv("VS_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_defaults(models: Path) -> None:
    settings = DetectorSettings()
    assert settings.port == 50051
    assert settings.model_path == models / "yolov8n_fp32_from_int8.onnx"
    assert settings.labels_path == models / "coco80_labels.txt"
    assert (settings.decoder, settings.conf_threshold, settings.iou_threshold) == ("yolov8", 0.25, 0.45)
    assert (settings.max_detections, settings.classes, settings.threads) == (20, [], 2)
    assert settings.parallel_runs == 2
    assert settings.spin_wait is False  # idle onnxruntime threads must not steal the embedder's cores


def test_env_overrides_and_comma_separated_classes(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_DETECTOR_CLASSES", " handbag, backpack,,handbag ")
    monkeypatch.setenv("VS_DETECTOR_CONF_THRESHOLD", "0.4")
    monkeypatch.setenv("VS_DETECTOR_DECODER", "yolox")
    settings = DetectorSettings()
    assert settings.classes == ["handbag", "backpack"]
    assert settings.conf_threshold == 0.4
    assert settings.decoder == "yolox"


def test_absolute_model_path(models: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("elsewhere") / "custom.onnx"
    other.write_bytes(b"onnx")
    assert DetectorSettings(model=str(other)).model_path == other


def test_missing_model_fails_with_its_path(models: Path) -> None:
    with pytest.raises(ValidationError, match=r"detector model file not found: .*/nope\.onnx"):
        DetectorSettings(model="nope.onnx")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conf_threshold", 0.0),
        ("conf_threshold", 1.5),
        ("iou_threshold", -0.1),
        ("max_detections", 0),
        ("max_detections", 301),
        ("threads", 0),
        ("decoder", "yolov5"),
    ],
)
def test_out_of_range_values_are_rejected(
    models: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: object
) -> None:
    monkeypatch.setenv(f"VS_DETECTOR_{field.upper()}", str(value))
    with pytest.raises(ValidationError, match=field):
        DetectorSettings()
