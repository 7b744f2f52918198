"""What `visualsearch models fetch` downloads, to where, checked against which hash; and `list` states."""

import hashlib
from pathlib import Path

import pytest

from services.embedder.manifest import ManifestError, load_manifest, parse_manifest
from services.models.fetch import FetchError, check_sha256, check_url, part_path
from services.models.targets import bare_target, entry_target, statuses

SHA = hashlib.sha256(b"weights").hexdigest()
OTHER = hashlib.sha256(b"other").hexdigest()
MODELS = Path("/srv/models")


def manifest(url: str = "https://example.org/a.onnx", sha256: str = SHA, file: str = "a.onnx") -> str:
    return (
        f'[a]\nfile = "{file}"\nsha256 = "{sha256}"\nurl = "{url}"\ninput = "i"\noutput = "o"\n'
        'resize_shorter = 256\ncrop = 224\nmean = [0, 0, 0]\nstd = [1, 1, 1]\nlicence = "test"\n'
    )


def test_an_entry_fetches_its_url_into_its_file_under_the_models_dir() -> None:
    target = entry_target(parse_manifest(manifest()), "a", MODELS)
    assert (target.url, target.sha256, target.path, target.pinned) == (
        "https://example.org/a.onnx",
        SHA,
        MODELS / "a.onnx",
        True,
    )


def test_command_line_values_override_url_and_output() -> None:
    target = entry_target(
        parse_manifest(manifest()), "a", MODELS, url="http://mirror/a", output="/opt/x.onnx"
    )
    assert (target.url, target.path, target.sha256) == ("http://mirror/a", Path("/opt/x.onnx"), SHA)


def test_an_absolute_file_in_the_manifest_ignores_the_models_dir() -> None:
    target = entry_target(parse_manifest(manifest(file="/weights/a.onnx")), "a", MODELS)
    assert target.path == Path("/weights/a.onnx")


def test_an_unpinned_entry_needs_a_hash_from_the_command_line() -> None:
    unpinned = parse_manifest(manifest(sha256=""))
    with pytest.raises(
        FetchError, match=r"no sha256 pinned .*pass --sha256 HEX.*unverified downloads are refused"
    ):
        entry_target(unpinned, "a", MODELS)
    target = entry_target(unpinned, "a", MODELS, sha256=SHA.upper())
    assert (target.sha256, target.pinned) == (SHA, False)


def test_a_hash_that_contradicts_the_pin_is_refused() -> None:
    with pytest.raises(FetchError, match=rf"--sha256 {OTHER} differs from the hash {SHA} pinned"):
        entry_target(parse_manifest(manifest()), "a", MODELS, sha256=OTHER)


def test_an_entry_without_url_tells_the_operator_what_to_pass() -> None:
    with pytest.raises(FetchError, match=r"model 'a' has no download URL .*pass --url URL"):
        entry_target(parse_manifest(manifest(url="")), "a", MODELS)


def test_the_packaged_resnet50_entry_asks_for_url_and_hash() -> None:
    packaged = load_manifest()
    with pytest.raises(FetchError, match="pass --url URL"):
        entry_target(packaged, "resnet50", MODELS)
    with pytest.raises(FetchError, match="pass --sha256 HEX"):
        entry_target(packaged, "resnet50", MODELS, url="https://example.org/resnet50.onnx")


def test_an_unknown_entry_names_the_known_ones() -> None:
    with pytest.raises(ManifestError, match=r"unknown model 'b'.*known models: a"):
        entry_target(parse_manifest(manifest()), "b", MODELS)


def test_a_bare_fetch_needs_url_hash_and_output() -> None:
    with pytest.raises(FetchError, match="--url, --sha256 and --output are all required"):
        bare_target("https://example.org/y.onnx", SHA, None, MODELS)
    target = bare_target("https://example.org/y.onnx", SHA, "yolov8n.onnx", MODELS)
    assert (target.label, target.path, target.pinned) == ("yolov8n.onnx", MODELS / "yolov8n.onnx", False)


@pytest.mark.parametrize("url", ["ftp://example.org/a", "file:///etc/passwd", "example.org/a", "https://"])
def test_only_http_urls_are_fetched(url: str) -> None:
    with pytest.raises(FetchError, match="only http"):
        check_url(url)


@pytest.mark.parametrize("value", ["", "abc", SHA[:-1], SHA + "0", "g" * 64])
def test_a_sha256_is_64_hex_digits(value: str) -> None:
    with pytest.raises(FetchError, match="64 hex digits"):
        check_sha256(value)


def test_a_sha256_is_normalised_to_lowercase() -> None:
    assert check_sha256(f" {SHA.upper()} ") == SHA


def test_the_part_file_sits_beside_the_target() -> None:
    assert part_path(MODELS / "a.onnx") == MODELS / "a.onnx.part"


def test_statuses_tell_ok_mismatch_unpinned_and_missing(tmp_path: Path) -> None:
    text = (
        manifest(file="ok.onnx").replace("[a]", "[ok]")
        + manifest(file="bad.onnx").replace("[a]", "[bad]")
        + manifest(file="free.onnx", sha256="").replace("[a]", "[free]")
        + manifest(file="gone.onnx").replace("[a]", "[gone]")
    )
    (tmp_path / "ok.onnx").write_bytes(b"weights")
    (tmp_path / "bad.onnx").write_bytes(b"tampered")
    (tmp_path / "free.onnx").write_bytes(b"anything")
    found = {
        s.entry.name: (s.present, s.check, s.path.name) for s in statuses(parse_manifest(text), tmp_path)
    }
    assert found == {
        "ok": (True, "ok", "ok.onnx"),
        "bad": (True, "MISMATCH", "bad.onnx"),
        "free": (True, "unpinned", "free.onnx"),
        "gone": (False, "-", "gone.onnx"),
    }
