"""Labels, the class allow-list and the model id: the parts of model loading that need no session."""

from pathlib import Path

import numpy as np
import pytest

from services.detector.model import ModelConfigError, allow_mask, model_id, read_labels

LABELS = ["person", "bicycle", "handbag"]


def test_labels_from_ultralytics_metadata() -> None:
    metadata = {"names": "{0: 'person', 1: 'bicycle', 2: 'handbag'}"}
    assert read_labels(metadata, None) == LABELS


def test_labels_file_when_metadata_has_none(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("person\nbicycle\n\nhandbag\n", encoding="utf-8")
    assert read_labels({}, path) == LABELS


@pytest.mark.parametrize(
    ("names", "error"),
    [
        ("{0: 'person', 2: 'handbag'}", "not a {0: name"),  # a gap in the indices
        ("['person']", "not a {0: name"),
        ("__import__('os')", "not a Python literal"),  # never evaluated as code
    ],
)
def test_bad_metadata_names(names: str, error: str) -> None:
    with pytest.raises(ModelConfigError, match=error):
        read_labels({"names": names}, None)


def test_missing_labels_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=r"labels file .*missing\.txt is missing"):
        read_labels({}, tmp_path / "missing.txt")


def test_allow_mask() -> None:
    assert allow_mask(LABELS, []) is None
    mask = allow_mask(LABELS, ["handbag", "person"])
    assert mask is not None
    assert mask.tolist() == [True, False, True]
    assert mask.dtype == np.bool_


def test_unknown_allow_list_names_fail_fast() -> None:
    with pytest.raises(ModelConfigError, match=r"unknown class names in the allow-list: 'purse'"):
        allow_mask(LABELS, ["handbag", "purse"])


def test_model_id_names_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(b"abc")
    assert model_id(path) == "tiny-ba7816bf"  # sha256("abc") = ba7816bf...
