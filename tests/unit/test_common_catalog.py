"""Product metadata validation (one model for JSON and multipart) and content-hash stability."""

import hashlib
from typing import Any

import pytest
from pydantic import ValidationError

from services.common.catalog import ProductMeta, content_hash, image_key, image_urls
from services.gateway.schemas import ProductJsonBody

META: dict[str, Any] = {
    "title": "Red leather handbag",
    "url": "https://shop.example/p/1",
    "image_url": "/media/bags/1.jpg",
    "price": 129.5,
    "currency": "eur",
    "category": "Bags",
    "brand": "Acme",
    "attributes": {"color": "red", "size": 3, "leather": True, "weight": 0.8, "note": None},
}


def test_valid_metadata_is_normalised() -> None:
    meta = ProductMeta.model_validate(META)
    assert meta.currency == "EUR"
    assert meta.attributes["leather"] is True
    assert meta.display_image_url() == "/media/bags/1.jpg"


def test_form_strings_validate_like_json() -> None:
    attributes = '{"color": "red", "size": 3, "leather": true, "weight": 0.8, "note": null}'
    form = {**META, "price": "129.5", "attributes": attributes}
    assert ProductMeta.model_validate(form) == ProductMeta.model_validate(META)
    assert ProductMeta.model_validate({"price": "", "attributes": ""}).price is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "x" * 501),
        ("url", "ftp://shop.example/p/1"),
        ("url", "shop.example/p/1"),
        ("url", "//evil.example/x"),
        ("url", "https://"),
        ("url", "https://shop.example/" + "a" * 2048),
        ("image_url", "https://shop.example/a b.jpg"),
        ("image_url", "javascript:alert(1)"),
        ("image_urls", ["https://ok.example/a.jpg", "file:///etc/passwd"]),
        ("price", -0.01),
        ("price", float("nan")),
        ("price", float("inf")),
        ("price", "cheap"),
        ("currency", "EURO"),
        ("currency", "E1R"),
        ("category", "c" * 201),
        ("brand", "b" * 201),
        ("attributes", {"nested": {"a": 1}}),
        ("attributes", {"list": [1, 2]}),
        ("attributes", {f"k{i}": i for i in range(65)}),
        ("attributes", {"": "empty key"}),
        ("attributes", {f"k{i}": "\u20ac" * 1000 for i in range(30)}),  # 90 KB of UTF-8
        ("attributes", {"x": float("nan")}),
        ("attributes", "[1, 2]"),
        ("attributes", "{not json"),
        ("unknown_field", "typo"),
    ],
)
def test_invalid_metadata_is_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        ProductMeta.model_validate({**META, field: value})
    assert info.value.errors()[0]["loc"][0] == field


def test_json_body_adds_only_the_image_fields() -> None:
    body = ProductJsonBody.model_validate({**META, "image": "aGk=", "images": ["aGk="]})
    assert (body.image, body.images) == ("aGk=", ["aGk="])


def test_content_hash_is_stable_and_sensitive() -> None:
    meta = ProductMeta.model_validate(META)
    reordered = ProductMeta.model_validate(dict(reversed(list(META.items()))))
    images = [b"first image bytes", b"second image bytes"]
    digest = content_hash(meta, images)
    assert digest == content_hash(reordered, list(images))  # field order does not matter
    assert len(digest) == 64
    assert digest != content_hash(meta, images[::-1])  # image order does
    assert digest != content_hash(meta, [images[0], images[1] + b"!"])
    assert digest != content_hash(meta.model_copy(update={"price": 129.51}), images)
    assert digest != content_hash(meta.model_copy(update={"attributes": {"color": "blue"}}), images)


def test_image_key_is_the_first_16_hex_of_sha256() -> None:
    assert image_key(b"abc") == hashlib.sha256(b"abc").hexdigest()[:16]


def test_image_urls_put_the_display_image_first_without_duplicates() -> None:
    urls = ["https://a.example/2.jpg", "https://a.example/1.jpg", " "]
    meta = ProductMeta(image_url="https://a.example/1.jpg", image_urls=urls)
    assert image_urls(meta) == ["https://a.example/1.jpg", "https://a.example/2.jpg"]
