"""POST /v1/search through the real gateway app against fake gRPC backends."""

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.service.gateway_fakes import (
    FakeBackends,
    detection,
    encode,
    fake_backends,
    gateway,
    two_bag_scene,
)

MAX_UPLOAD = 1_000_000
RED_BAG = (100, 150, 400, 450)  # working coordinates (the 2048x1536 scene is decoded at half size)
BLUE_BAG = (600, 200, 900, 500)


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        fakes.indexer.add("red-bag", (1, 0, 0), title="Red bag", category="bags", price=10.0, currency="EUR")
        fakes.indexer.add("blue-bag", (0, 0, 1), title="Blue bag", category="bags")
        fakes.indexer.add("green-hat", (0, 1, 0), title="Green hat", category="hats")
        fakes.indexer.add("white-shirt", (1, 1, 1), title="White shirt", category="shirts")
        yield fakes


@pytest.fixture(scope="module")
def client(backends: FakeBackends) -> Iterator[TestClient]:
    with gateway(backends, max_upload_bytes=MAX_UPLOAD) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def two_bags(backends: FakeBackends) -> None:
    backends.detector.detections = [detection(BLUE_BAG, "backpack", 0.6), detection(RED_BAG, "handbag", 0.9)]


def search(client: TestClient, data: bytes, filename: str = "photo.jpg", **fields: Any) -> httpx.Response:
    response: httpx.Response = client.post(
        "/v1/search", files={"image": (filename, data, "image/jpeg")}, data=fields
    )
    return response


def test_the_whole_image_comes_first_then_each_detected_object_with_its_own_matches(
    client: TestClient, backends: FakeBackends
) -> None:
    seen_before, calls_before = len(backends.detector.seen), len(backends.embedder.calls)
    response = search(client, encode(two_bag_scene()), k="2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == {"width": 2048, "height": 1536}
    objects = body["objects"]
    assert [(o["label"], o["box"]) for o in objects] == [
        ("image", [0.0, 0.0, 2048.0, 1536.0]),
        ("handbag", [200.0, 300.0, 800.0, 900.0]),  # more confident, same size: first
        ("backpack", [1200.0, 400.0, 1800.0, 1000.0]),
    ]
    assert [m["product_id"] for m in objects[1]["matches"]] == ["red-bag", "white-shirt"]
    assert [m["product_id"] for m in objects[2]["matches"]] == ["blue-bag", "white-shirt"]
    assert objects[1]["matches"][0]["price"] == 10.0
    assert backends.detector.seen[seen_before:] == [(1024, 768)]  # the working-size image, once
    # One batched Embed call: the whole working image, then the detections padded by 4% of 300 px
    # (12 px) on each side.
    assert backends.embedder.calls[calls_before:] == [[(1024, 768), (324, 324), (324, 324)]]
    assert len(backends.indexer.searches[-1].queries) == 3
    assert set(body["timings_ms"]) == {"decode", "detect", "embed", "search", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["decode"] > 0


def test_detections_only_when_the_whole_image_object_is_off(backends: FakeBackends) -> None:
    with gateway(backends, max_upload_bytes=MAX_UPLOAD, whole_image_object=False) as detections_only:
        response = search(detections_only, encode(two_bag_scene()), k="1")
    assert response.status_code == 200, response.text
    objects = response.json()["objects"]
    assert [(o["label"], o["matches"][0]["product_id"]) for o in objects] == [
        ("handbag", "red-bag"),
        ("backpack", "blue-bag"),
    ]


def test_a_detection_covering_the_whole_image_is_not_repeated(
    client: TestClient, backends: FakeBackends
) -> None:
    backends.detector.detections = [
        detection((0, 0, 1000, 760), "suitcase", 0.9),
        detection(RED_BAG, "handbag", 0.9),
    ]
    response = search(client, encode(two_bag_scene()))
    assert response.status_code == 200, response.text
    assert [o["label"] for o in response.json()["objects"]] == ["image", "handbag"]


def test_nothing_detected_searches_the_whole_image(client: TestClient, backends: FakeBackends) -> None:
    backends.detector.detections = []
    image = Image.new("RGB", (300, 200), (30, 200, 30))
    response = search(client, encode(image))
    assert response.status_code == 200, response.text
    [obj] = response.json()["objects"]
    assert (obj["label"], obj["confidence"], obj["box"]) == ("image", 1.0, [0.0, 0.0, 300.0, 200.0])
    assert obj["matches"][0]["product_id"] == "green-hat"
    assert backends.embedder.calls[-1] == [(300, 200)]


def test_detect_false_skips_the_detector(client: TestClient, backends: FakeBackends) -> None:
    seen_before = len(backends.detector.seen)
    response = search(client, encode(two_bag_scene()), detect="false")
    assert response.status_code == 200, response.text
    [obj] = response.json()["objects"]
    assert (obj["label"], obj["box"]) == ("image", [0.0, 0.0, 2048.0, 1536.0])
    assert len(backends.detector.seen) == seen_before
    assert backends.embedder.calls[-1] == [(1024, 768)]
    assert response.json()["timings_ms"]["detect"] == 0.0


def test_box_searches_only_that_region(client: TestClient, backends: FakeBackends) -> None:
    seen_before = len(backends.detector.seen)
    response = search(client, encode(two_bag_scene()), box="1300,500,1700,900")
    assert response.status_code == 200, response.text
    [obj] = response.json()["objects"]
    assert (obj["label"], obj["box"]) == ("region", [1300.0, 500.0, 1700.0, 900.0])
    assert obj["matches"][0]["product_id"] == "blue-bag"
    assert backends.embedder.calls[-1] == [(200, 200)]  # 400 original px at scale 0.5, no padding
    assert len(backends.detector.seen) == seen_before


def test_box_is_clipped_to_the_image(client: TestClient, backends: FakeBackends) -> None:
    response = search(client, encode(two_bag_scene()), box="1848,1336,9999,9999")
    assert response.status_code == 200, response.text
    assert response.json()["objects"][0]["box"] == [1848.0, 1336.0, 2048.0, 1536.0]
    assert backends.embedder.calls[-1] == [(100, 100)]


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ("3000,3000,4000,4000", "outside the 2048x1536 image"),
        ("10,10,5,20", "x1 < x2"),
        ("1,2,3", "4 comma-separated numbers"),
        ("1,2,inf,4", "finite"),
    ],
)
def test_bad_box_is_422(client: TestClient, box: str, message: str) -> None:
    response = search(client, encode(two_bag_scene()), box=box)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_filters_reach_the_indexer(client: TestClient, backends: FakeBackends) -> None:
    response = client.post(
        "/v1/search",
        files={"image": ("a.jpg", encode(two_bag_scene()), "image/jpeg")},
        data={"category": ["hats", "shirts"], "k": "3", "min_similarity": "0.1", "min_price": "1"},
    )
    assert response.status_code == 200, response.text
    sent = backends.indexer.searches[-1]
    assert (list(sent.filter.categories), sent.k, sent.filter.min_price) == (["hats", "shirts"], 3, 1.0)
    assert sent.min_similarity == pytest.approx(0.1)
    assert not sent.filter.HasField("max_price")
    for obj in response.json()["objects"]:
        assert {m["category"] for m in obj["matches"]} <= {"hats", "shirts"}


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return encode(Image.new("RGB", (64, 32), "red"), exif=exif)


def _truncated_jpeg() -> bytes:
    noise = Image.effect_noise((256, 256), 64).convert("RGB")
    data = encode(noise)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (encode(Image.new("RGBA", (40, 30), (255, 0, 0, 128)), "PNG"), (40, 30)),
        (encode(Image.new("P", (50, 20), 3), "GIF"), (50, 20)),
        (encode(Image.new("CMYK", (33, 44), (0, 255, 255, 0))), (33, 44)),
        (encode(Image.new("L", (20, 20), 128), "WEBP"), (20, 20)),
        (_exif_rotated_jpeg(), (32, 64)),  # width/height as displayed, after rotation
    ],
    ids=["png-alpha", "palette-gif", "cmyk-jpeg", "grey-webp", "exif-rotated"],
)
def test_unusual_images_succeed(client: TestClient, data: bytes, size: tuple[int, int]) -> None:
    response = search(client, data, detect="false")
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": size[0], "height": size[1]}
    assert response.json()["objects"][0]["box"] == [0.0, 0.0, float(size[0]), float(size[1])]


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "image_empty"),
        (b"this is just text, not a JPEG\n" * 10, 422, "image_not_image"),
        (_truncated_jpeg(), 422, "image_truncated"),
        (encode(Image.new("RGB", (1, 1))), 422, "image_too_small"),
        (encode(Image.new("RGB", (32, 32)), "ICO"), 415, "image_unsupported_format"),
    ],
    ids=["empty", "text-as-jpg", "truncated-jpeg", "1x1", "ico"],
)
def test_unusable_images_get_a_precise_error(client: TestClient, data: bytes, status: int, code: str) -> None:
    response = search(client, data)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.json()["detail"]


def test_oversize_upload_is_413_from_content_length(client: TestClient) -> None:
    response = search(client, b"\xff" * (2 * MAX_UPLOAD))
    assert (response.status_code, response.json()["code"]) == (413, "too_large")
    assert "limit" in response.json()["detail"]


def test_oversize_file_within_the_form_allowance_is_413(client: TestClient) -> None:
    response = search(client, b"\xff" * (MAX_UPLOAD + 1))
    assert response.status_code == 413
    assert response.json()["detail"] == f"the image is over the limit of {MAX_UPLOAD} bytes"


def test_oversize_chunked_body_is_413_while_streaming(client: TestClient) -> None:
    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"\xff" * 65536  # 2.6 MB in all, sent without a Content-Length

    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = client.post("/v1/search", content=body(), headers=headers)
    assert (response.status_code, response.json()["code"]) == (413, "too_large")


@pytest.mark.parametrize("k", ["abc", "0", "-1", "1000", "101", "2.5"])
def test_bad_k_is_422(client: TestClient, k: str) -> None:
    response = search(client, encode(two_bag_scene()), k=k)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


@pytest.mark.parametrize(
    "fields", [{"min_price": "nan"}, {"min_similarity": "2"}, {"min_price": "5", "max_price": "1"}]
)
def test_bad_filters_are_422(client: TestClient, fields: dict[str, str]) -> None:
    assert search(client, encode(two_bag_scene()), **fields).status_code == 422


def test_image_and_image_url_are_exclusive(client: TestClient) -> None:
    both = search(client, encode(two_bag_scene()), image_url="http://127.0.0.1/a.jpg")
    neither = client.post("/v1/search", data={"k": "3"})
    for response in (both, neither):
        assert (response.status_code, response.json()["code"]) == (422, "invalid_argument")


def test_max_objects_caps_the_detections(backends: FakeBackends) -> None:
    backends.detector.detections = [detection((i * 10, 0, i * 10 + 10, 10), f"o{i}", 0.5) for i in range(6)]
    with gateway(backends, max_objects=3) as small:
        response = search(small, encode(Image.new("RGB", (100, 100), "white")))
    assert response.status_code == 200, response.text
    assert [o["label"] for o in response.json()["objects"]] == ["image", "o0", "o1"]  # 3 in all


def test_png_is_read_from_a_real_file_object(client: TestClient) -> None:
    buffer = io.BytesIO(encode(Image.new("RGB", (64, 48), "blue"), "PNG"))
    response = client.post(
        "/v1/search", files={"image": ("b.png", buffer, "image/png")}, data={"detect": "0"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["objects"][0]["matches"][0]["product_id"] == "blue-bag"
