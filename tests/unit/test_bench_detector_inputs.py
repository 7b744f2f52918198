"""bench/detector_inputs on a few COCO128 photos: both input settings, every size, sane counts."""

from pathlib import Path

from bench.perfkit.detector_inputs import ground_truth, run, table
from tests.paths import DATASETS

COCO128 = DATASETS / "scenes" / "coco128"


def test_labels_become_pixel_boxes(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("5 0.5 0.5 0.5 0.25\n0 0.1 0.1 0.2 0.2\n")
    boxes, classes = ground_truth(label, 200, 100)
    assert boxes.tolist() == [[50, 37.5, 150, 62.5], [0, 0, 40, 20]]
    assert classes.tolist() == [5, 0]
    assert ground_truth(tmp_path / "missing.txt", 10, 10)[0].shape == (0, 4)


def test_a_short_run_compares_both_settings_at_every_size() -> None:
    result = run(COCO128, [0, 224], limit=4)
    assert [(r["long_side"], r["inputs"]) for r in result["rows"]] == [
        ("as is", "square"),
        ("as is", "default"),
        (224, "square"),
        (224, "default"),
    ]
    for row in result["rows"]:
        assert row["photos"] == 4
        assert 0 <= row["found"] <= row["large_objects"]
        assert row["cpu_ms_per_photo"] > 0
    assert result["canvases"]["416"] == ["416x416"]
    assert "default" in table(result)
