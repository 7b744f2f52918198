"""Feed parsing: format detection, CSV and JSONL readers, not-a-feed rejection."""

import pytest

from services.scraper.feed_rows import RowError, RowRules
from services.scraper.feeds import FeedError, detect_format, parse_feed
from services.scraper.items import Item

FEED_URL = "https://shop.example/feeds/catalog.csv"


def parse(text: str | bytes, fmt: str = "auto", base_url: str | None = FEED_URL) -> list[Item | RowError]:
    data = text.encode() if isinstance(text, str) else text
    detected = detect_format(data, fmt, name="feed")
    return list(parse_feed(data, detected, RowRules("shop", base_url, max_images=6)))


def items(results: list[Item | RowError]) -> dict[str, Item]:
    return {r.product_id: r for r in results if isinstance(r, Item)}


def errors(results: list[Item | RowError]) -> list[tuple[int, str, str]]:
    return [(r.row, r.product_id, r.code) for r in results if isinstance(r, RowError)]


def test_csv_with_bom_quoting_and_every_product_column() -> None:
    text = (
        "\ufeffproduct_id,title,url,image_url,price,currency,category,brand,Colour\r\n"
        'bag-1,"Bag, ""red""",/p/bag-1,/img/bag-1.jpg,49.90,eur,bags,Acme,red\r\n'
        'bag-2,"Two\nlines",https://other.example/p,https://cdn.example/2.jpg,12.99 USD,,bags,,\r\n'
    )
    results = parse(text)
    assert errors(results) == []
    first, second = items(results)["bag-1"], items(results)["bag-2"]
    assert first.meta == {
        "title": 'Bag, "red"',
        "url": "https://shop.example/p/bag-1",
        "image_url": "https://shop.example/img/bag-1.jpg",
        "price": 49.9,
        "currency": "EUR",
        "category": "bags",
        "brand": "Acme",
        "attributes": {"Colour": "red"},
    }
    assert (first.source, first.row) == ("shop", 2)
    # A quoted newline keeps the record whole; the next record starts on line 3.
    assert (second.meta["title"], second.row) == ("Two\nlines", 3)
    assert (second.meta["price"], second.meta["currency"]) == (12.99, "USD")


def test_several_images_from_repeated_numbered_and_list_columns() -> None:
    text = (
        "product_id,image_url,image_url,image_url_3,image_url_2,image_urls\n"
        "p1,a.jpg,b.jpg,d.jpg,c.jpg,e.jpg | f.jpg\n"
        'p2,,,,,"[""/x.jpg"", ""//cdn.example/y.jpg""]"\n'
        "p3,a.jpg,a.jpg,,,\n"
    )
    found = items(parse(text))
    base = "https://shop.example/feeds/"
    p1 = [found["p1"].meta["image_url"], *found["p1"].meta["image_urls"]]
    assert p1 == [base + n for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg")]
    assert [found["p2"].meta["image_url"], *found["p2"].meta["image_urls"]] == [
        "https://shop.example/x.jpg",
        "https://cdn.example/y.jpg",
    ]
    assert "image_urls" not in found["p3"].meta  # the same URL twice is one image


def test_more_images_than_allowed_is_a_row_error() -> None:
    results = parse("product_id,image_urls\np1,1.jpg 2.jpg 3.jpg 4.jpg 5.jpg 6.jpg 7.jpg\n")
    assert errors(results) == [(2, "p1", "too_many_images")]


def test_jsonl_with_lists_repeated_keys_attributes_and_numeric_ids() -> None:
    text = (
        '{"product_id": 17, "title": "Tee", "image_url": "/a.jpg", "image_url": "/b.jpg", '
        '"price": 9.5, "attributes": {"size": "M"}, "organic": true}\n'
        "\n"
        '{"product_id": "p2", "image_urls": ["https://cdn.example/1.jpg", "https://cdn.example/2.jpg"]}\n'
    )
    results = parse(text, base_url=None)
    assert errors(results) == []
    tee = items(results)["17"]
    assert tee.meta["image_url"] == "/a.jpg"
    assert tee.meta["image_urls"] == ["/b.jpg"]
    assert tee.meta["attributes"] == {"size": "M", "organic": True}
    assert items(results)["p2"].row == 3


def test_every_row_error_code() -> None:
    text = (
        "product_id,title,image_url,price,currency\n"
        ",no id,/a.jpg,,\n"  # 2
        "bad id!,x,/a.jpg,,\n"  # 3
        "p1,no image,,,\n"  # 4
        "p2,bad price,/a.jpg,abc,\n"  # 5
        "p3,bad currency,/a.jpg,1,EURO\n"  # 6
        "p4,ok,/a.jpg,1,EUR\n"  # 7
        "p4,again,/b.jpg,2,EUR\n"  # 8
        "p5,extra,/a.jpg,1,EUR,surprise\n"  # 9
        "p6,relative,img/a.jpg,,\n"  # 10
        "p7,scheme,ftp://x.example/a.jpg,,\n"  # 11
    )
    results = parse(text, base_url=None)
    assert errors(results) == [
        (2, "", "missing_product_id"),
        (3, "bad id!", "invalid_product_id"),
        (4, "p1", "no_image"),
        (5, "p2", "invalid_field"),
        (6, "p3", "invalid_field"),
        (8, "p4", "duplicate_product_id"),
        (9, "p5", "wrong_field_count"),
        (10, "p6", "invalid_field"),
        (11, "p7", "invalid_field"),
    ]
    messages = {r.row: r.message for r in results if isinstance(r, RowError)}
    assert messages[5].startswith("price:")
    assert messages[8] == "product_id 'p4' already appears on line 7"
    assert "needs a feed_url" in messages[10]
    assert list(items(results)) == ["p4"]


def test_jsonl_malformed_lines_and_wrong_types() -> None:
    text = (
        '{"product_id": "a", "image_url": "/a.jpg"\n'  # 1: cut short
        '["not", "an", "object"]\n'  # 2
        '{"product_id": "b", "title": 5, "image_url": "/a.jpg"}\n'  # 3
        '{"product_id": "c", "image_url": "/a.jpg", "tags": ["x"]}\n'  # 4
        '{"product_id": true, "image_url": "/a.jpg"}\n'  # 5
        '{"product_id": "d", "image_urls": [1, 2]}\n'  # 6
        '{"product_id": "e", "image_url": "/a.jpg", "price": NaN}\n'  # 7
        '{"product_id": "f", "image_url": "/a.jpg"}\n'  # 8
    )
    results = parse(text, fmt="jsonl", base_url=None)
    assert errors(results) == [
        (1, "", "malformed_json"),
        (2, "", "invalid_type"),
        (3, "b", "invalid_type"),
        (4, "c", "invalid_type"),
        (5, "", "invalid_type"),
        (6, "d", "invalid_type"),
        (7, "e", "invalid_field"),
    ]
    assert list(items(results)) == ["f"]


def test_invalid_utf8_and_broken_quotes_are_row_errors() -> None:
    data = (
        b"product_id,title,image_url\n"
        b"p1,caf\xe9,/a.jpg\n"  # Latin-1, not UTF-8
        b"p2,fine,/a.jpg\n"
        b'p3,"never closed,/a.jpg\n'
        b"p4,swallowed,/a.jpg\n"
    )
    results = parse(data)
    assert errors(results) == [(2, "p1", "invalid_encoding"), (4, "", "malformed_csv")]
    assert "never closed" in next(r.message for r in results if isinstance(r, RowError) and r.row == 4)
    assert list(items(results)) == ["p2"]


def test_attributes_are_capped_not_rejected() -> None:
    columns = [f"a{i}" for i in range(80)]
    text = (
        "product_id,image_url," + ",".join(columns) + "\np1,/a.jpg," + ",".join("x" * 2000 for _ in columns)
    )
    (item,) = parse(text)
    assert isinstance(item, Item)
    assert len(item.meta["attributes"]) == 64
    assert all(len(v) == 1000 for v in item.meta["attributes"].values())


@pytest.mark.parametrize(
    ("data", "name", "content_type", "expected"),
    [
        (b'{"product_id": "a"}\n', "", "", "jsonl"),
        (b"product_id,image_url\n", "", "", "csv"),
        (b"product_id\n", "feed.jsonl", "", "jsonl"),
        (b'{"a": 1}\n', "https://x.example/feed.csv?v=2", "", "csv"),
        (b"product_id\n", "", "application/x-ndjson; charset=utf-8", "jsonl"),
    ],
)
def test_format_detection(data: bytes, name: str, content_type: str, expected: str) -> None:
    assert detect_format(data, "auto", name, content_type) == expected


def test_tab_and_semicolon_separated_headers() -> None:
    assert list(items(parse("product_id\timage_url\np1\t/a.jpg\n"))) == ["p1"]
    assert list(items(parse("product_id;image_url\np1;/a.jpg\n"))) == ["p1"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b"\x1f\x8b\x08\x00rest", "gzip"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\x00\x01\x02binary", "binary"),
        (b"\n  <!DOCTYPE html><html></html>", "HTML"),
        (b'[{"product_id": "a"}]', "JSON array"),
        (b"\xff\xfep\x00", "UTF-16"),
    ],
)
def test_not_a_feed(data: bytes, reason: str) -> None:
    with pytest.raises(FeedError, match=reason):
        detect_format(data, "csv")


def test_csv_header_without_product_id_or_with_repeated_columns() -> None:
    with pytest.raises(FeedError, match="no product_id column"):
        parse("name,price\nshoe,10\n")
    with pytest.raises(FeedError, match="repeats the column"):
        parse("product_id,title,Title,image_url\np1,a,b,/x.jpg\n")
