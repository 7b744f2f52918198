"""Manifest loading: path resolution, split handling and each validation error."""

from pathlib import Path

import pytest
from PIL import Image

from bench.qualitykit.manifest import Dataset, ManifestError, load_dataset
from tests.paths import DATASETS

HEADER = "image_path,product_id,match_key,category,role,split,title\n"


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path, format="PNG")


def _manifest(tmp_path: Path, body: str, header: str = HEADER, images: tuple[str, ...] = ()) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    for image in images:
        _image(folder / image)
    path = folder / "manifest.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_loads_rows_relative_to_manifest_folder(tmp_path: Path) -> None:
    _image(tmp_path / "outside.png")
    path = _manifest(
        tmp_path,
        'cat/1.png,p1,Shirts,Shirts,catalog,train,"Blue shirt, slim"\n'
        "cat/1b.png,p1,Shirts,Shirts,catalog,train,Blue shirt\n"
        "../outside.png,p2,Shoes,Shoes,catalog,train,\n"
        "q/1.png,,Shirts,Shirts,query,val,\n",
        images=("cat/1.png", "cat/1b.png", "q/1.png"),
    )
    dataset = load_dataset(path)
    assert dataset.name == "shop"
    assert dataset.manifest == path.resolve()
    assert [r.image_path for r in dataset.catalog] == [
        (path.parent / "cat/1.png").resolve(),
        (path.parent / "cat/1b.png").resolve(),
        (tmp_path / "outside.png").resolve(),
    ]
    assert all(r.image_path.is_absolute() for r in dataset.catalog)
    assert dataset.catalog[0].title == "Blue shirt, slim"
    assert [r.product_id for r in dataset.queries] == [""]
    assert dataset.has_queries


def test_splits_queries_by_split_and_match_key(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        "c.png,p1,k,x,catalog,train,\n"
        "q1.png,,k,x,query,val,\n"
        "q2.png,,k,x,query,train,\n"
        "q3.png,,,x,query,val,\n"
        "q4.png,,k,x,query,test,\n",
        images=("c.png", "q1.png", "q2.png", "q3.png", "q4.png"),
    )
    dataset = load_dataset(path)
    assert [r.image_path.name for r in dataset.queries] == ["q1.png", "q4.png"]
    assert [r.image_path.name for r in dataset.train_queries] == ["q2.png"]


def test_title_column_is_optional(tmp_path: Path) -> None:
    header = "image_path,product_id,match_key,category,role,split\n"
    path = _manifest(tmp_path, "c.png,p1,k,x,catalog,train\n", header=header, images=("c.png",))
    assert load_dataset(path).catalog[0].title == ""


def test_no_catalog_or_no_queries_is_not_an_error(tmp_path: Path) -> None:
    only_queries = _manifest(tmp_path, "q.png,,k,x,query,val,\n", images=("q.png",))
    assert not load_dataset(only_queries).has_queries
    only_train = _manifest(
        tmp_path, "c.png,p1,k,x,catalog,train,\nq.png,,k,x,query,train,\n", images=("c.png",)
    )
    dataset = load_dataset(only_train)
    assert not dataset.has_queries
    assert len(dataset.train_queries) == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        load_dataset(tmp_path / "nope" / "manifest.csv")


def test_empty_file(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "", header="")
    with pytest.raises(ManifestError, match="expected a header row"):
        load_dataset(path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "c.png,p1,catalog\n", header="image_path,product_id,role\n")
    with pytest.raises(
        ManifestError, match=r"line 1: missing required column\(s\): match_key, category, split"
    ):
        load_dataset(path)


def test_catalog_row_without_product_id(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "c.png,p1,k,x,catalog,train,\nd.png,,k,x,catalog,train,\n", images=("c.png",))
    with pytest.raises(ManifestError, match="line 3: catalog row without product_id"):
        load_dataset(path)


def test_unknown_role(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "c.png,p1,k,x,scene,val,\n")
    with pytest.raises(ManifestError, match="line 2: role 'scene' is neither"):
        load_dataset(path)


def test_wrong_field_count(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "c.png,p1,k,x,catalog\n")
    with pytest.raises(ManifestError, match="line 2: 5 fields, the header has 7"):
        load_dataset(path)


def test_line_numbers_count_multiline_fields(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path, 'c.png,p1,k,x,catalog,train,"two\nlines"\nd.png,p2,k,x,shop,val,\n', images=("c.png",)
    )
    with pytest.raises(ManifestError, match="line 4: role 'shop'"):
        load_dataset(path)


def test_missing_images_listed_with_count(tmp_path: Path) -> None:
    body = "".join(f"m{i}.png,p{i},k,x,catalog,train,\n" for i in range(7))
    path = _manifest(tmp_path, "ok.png,p,k,x,catalog,train,\n" + body, images=("ok.png",))
    with pytest.raises(ManifestError) as error:
        load_dataset(path)
    message = str(error.value)
    assert "7 image file(s) not found" in message
    assert f"line 3: {path.parent / 'm0.png'}" in message
    assert "m4.png" in message
    assert "m5.png" not in message
    assert "(and 2 more)" in message


def test_invalid_utf8(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "")
    path.write_bytes(HEADER.encode() + b"c\xff.png,p1,k,x,catalog,train,\n")
    with pytest.raises(ManifestError, match="not valid UTF-8"):
        load_dataset(path)


def _real(name: str) -> Dataset:
    path = DATASETS / name / "manifest.csv"
    if not path.is_file():
        pytest.skip(f"shared dataset not found at {path} (set VS_SHARED_DIR)")
    return load_dataset(path)


def test_real_grocery_store() -> None:
    dataset = _real("grocery_store")
    assert dataset.name == "grocery_store"
    assert len(dataset.catalog) == 65
    assert len(dataset.queries) == 1294
    assert dataset.has_queries


def test_real_fashion_products() -> None:
    dataset = _real("fashion_products")
    assert len(dataset.catalog) == 2272
    assert len(dataset.queries) == 378
