"""The `visualsearch` entry point: `models ...` goes to the models CLI, the rest to the scraper's."""

import hashlib
from pathlib import Path

import pytest

from services.cli import main as visualsearch
from services.models.cli import main as models

SHA = hashlib.sha256(b"weights").hexdigest()


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VS_EMBEDDER_MANIFEST", raising=False)
    monkeypatch.delenv("VS_MODELS_DIR", raising=False)


def run(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as exited:
        visualsearch(argv)
    return exited.value.code


def test_list_shows_each_entry_its_file_presence_and_hash_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mobilenetv2_features_int8.onnx").write_bytes(b"not the pinned weights")
    (tmp_path / "resnet50_features.onnx").write_bytes(b"anything")
    monkeypatch.setenv("VS_MODELS_DIR", str(tmp_path))  # the shared setting is the default dir
    assert run(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "PRESENT", "SHA256", "URL", "FILE"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows == {
        "mobilenetv2-features": ["no", "-", "-", str(tmp_path / "mobilenetv2_features_fp32.onnx")],
        "mobilenetv2-features-int8": [
            "yes",
            "MISMATCH",
            "-",
            str(tmp_path / "mobilenetv2_features_int8.onnx"),
        ],
        "resnet50": ["yes", "unpinned", "-", str(tmp_path / "resnet50_features.onnx")],
    }


def test_list_reads_the_manifest_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "models.toml"
    manifest.write_text(
        f'[mine]\nfile = "m.onnx"\nsha256 = "{SHA}"\nurl = "https://example.org/m.onnx"\ninput = "i"\n'
        'output = "o"\nresize_shorter = 1\ncrop = 1\nmean = [0, 0, 0]\nstd = [1, 1, 1]\nlicence = "x"\n'
    )
    (tmp_path / "m.onnx").write_bytes(b"weights")
    assert models(["list", "--manifest", str(manifest), "--models-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == [
        "mine",
        "yes",
        "ok",
        "pinned",
        str(tmp_path / "m.onnx"),
    ]


def test_a_bad_manifest_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert models(["list", "--manifest", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read model manifest" in caplog.text


def test_fetch_without_name_or_url_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    assert models(["fetch"]) == 1
    assert "--url, --sha256 and --output are all required" in caplog.text


def test_fetch_help_explains_the_yolo_route(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["models", "fetch", "--help"]) == 0
    text = capsys.readouterr().out
    assert "yolo export model=yolov8n.pt format=onnx" in text
    assert "--output yolov8n.onnx" in text
    assert "VS_FETCH_ATTEMPTS" in text


def test_top_level_help_keeps_the_scraper_commands_and_adds_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["--help"]) == 0
    text = capsys.readouterr().out
    assert "load-manifest" in text
    assert "visualsearch models --help" in text


def test_other_commands_still_reach_the_scraper_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["load-manifest", "--help"]) == 0
    assert "usage: visualsearch load-manifest" in capsys.readouterr().out
    assert run(["no-such-command"]) == 2
