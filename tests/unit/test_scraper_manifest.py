from pathlib import Path

from services.scraper.manifest import read_catalog

HEADER = "image_path,product_id,match_key,category,role,split,title,base_colour,source_path\n"


def _manifest(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    path = folder / "manifest.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def test_reads_catalog_rows_with_metadata(tmp_path: Path) -> None:
    manifest = _manifest(
        tmp_path,
        'images/1.jpg,p1,Shirts,Shirts,catalog,train,"Blue shirt, slim",Blue,x/1.jpg\n'
        "images/2.jpg,p2,Shirts,Shirts,query,val,Query shirt,Red,x/2.jpg\n",
    )
    items = list(read_catalog(manifest, media_root=tmp_path))
    assert [i.product_id for i in items] == ["p1"]
    item = items[0]
    assert item.image_file == (manifest.parent / "images/1.jpg").resolve()
    assert item.metadata["title"] == "Blue shirt, slim"
    assert item.metadata["category"] == "Shirts"
    assert item.metadata["image_url"] == "/media/shop/images/1.jpg"
    assert item.metadata["attributes"] == {"dataset": "shop", "base_colour": "Blue"}


def test_rows_without_id_are_skipped_and_role_selects(tmp_path: Path) -> None:
    manifest = _manifest(
        tmp_path,
        "images/1.jpg,,k,c,catalog,train,t,Blue,s\nimages/2.jpg,p2,k,c,query,val,t2,Red,s\n",
    )
    assert list(read_catalog(manifest)) == []
    queries = list(read_catalog(manifest, role="query"))
    assert [q.product_id for q in queries] == ["p2"]
    assert "image_url" not in queries[0].metadata  # no media root: nothing to link to
