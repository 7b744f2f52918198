from pathlib import Path

from services.scraper.stages.local_media import LocalMedia

PREFIX = "http://127.0.0.1:8080/media/"


def media(tmp_path: Path, max_bytes: int = 1000) -> LocalMedia:
    (tmp_path / "shop" / "img").mkdir(parents=True)
    (tmp_path / "shop" / "img" / "a b.jpg").write_bytes(b"jpeg bytes")
    (tmp_path / "secret.txt").write_bytes(b"not served")
    return LocalMedia({PREFIX: tmp_path / "shop"}, max_bytes)


def test_a_url_under_a_mount_is_read_from_its_file(tmp_path: Path) -> None:
    assert media(tmp_path).read(PREFIX + "img/a%20b.jpg") == b"jpeg bytes"


def test_anything_else_is_left_to_the_download(tmp_path: Path) -> None:
    local = media(tmp_path)
    for url in (
        "http://127.0.0.1:8080/other/img/a%20b.jpg",  # not under the mount
        PREFIX + "img/missing.jpg",
        PREFIX + "img",  # a folder
        PREFIX + "../secret.txt",  # escapes the folder
        PREFIX + "img/..%2F..%2Fsecret.txt",
        PREFIX + "img/a%20b.jpg?size=small",  # a server may answer a query differently
    ):
        assert local.read(url) is None, url


def test_a_file_over_the_limit_is_downloaded_for_the_usual_error(tmp_path: Path) -> None:
    assert media(tmp_path, max_bytes=4).read(PREFIX + "img/a%20b.jpg") is None


def test_no_mounts_reads_nothing(tmp_path: Path) -> None:
    assert LocalMedia({}, 1000).read(PREFIX + "img/a%20b.jpg") is None
