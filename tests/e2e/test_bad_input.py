"""Hostile and odd uploads through the real stack: the right 4xx, or success for valid images."""

import io

import pytest
from PIL import Image

from tests.e2e.conftest import RunningStack
from tests.paths import DATASETS

PHOTO = DATASETS / "scenes/extra/bus.jpg"


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def _photo() -> Image.Image:
    return Image.open(PHOTO).convert("RGB")


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    return _encode(_photo(), "JPEG", exif=exif.tobytes())


def _zero_by_zero_png() -> bytes:
    # A PNG whose header claims 0x0 pixels: Pillow refuses to write one, so patch the IHDR.
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = b"\x00" * 8
    return bytes(data)


BAD = {
    "empty": (b"", 422),
    "text named .jpg": (b"this is not an image\n" * 20, 422),
    "truncated jpeg": (PHOTO.read_bytes()[:3000], 422),
    "zero by zero": (_zero_by_zero_png(), 422),
    "one by one": (_encode(Image.new("RGB", (1, 1), "red"), "PNG"), 422),
    "oversize": (b"\xff\xd8\xff\xe0" + b"\0" * (21 * 1024 * 1024), 413),
}

GOOD = {
    "png with alpha": _encode(_photo().convert("RGBA"), "PNG"),
    "palette gif": _encode(_photo().convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
    "cmyk jpeg": _encode(_photo().convert("CMYK"), "JPEG"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_upload_gets_precise_4xx(running: RunningStack, name: str) -> None:
    data, status = BAD[name]
    response = running.client.post("/v1/search", files={"image": ("upload.jpg", data, "image/jpeg")})
    assert response.status_code == status, response.text
    assert response.json()["detail"], response.text


@pytest.mark.parametrize("name", list(GOOD))
def test_valid_odd_images_succeed(running: RunningStack, name: str) -> None:
    response = running.client.post("/v1/search", files={"image": ("upload", GOOD[name])})
    assert response.status_code == 200, response.text
    assert response.json()["objects"][0]["matches"]


def test_exif_rotated_photo_is_auto_rotated(running: RunningStack) -> None:
    width, height = Image.open(PHOTO).size
    response = running.client.post("/v1/search", files={"image": ("r.jpg", _exif_rotated())})
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": height, "height": width}


def test_services_stay_up_after_bad_input(running: RunningStack) -> None:
    for data, _ in BAD.values():
        running.client.post("/v1/search", files={"image": ("x.jpg", data)})
    assert running.client.get("/readyz").status_code == 200
    assert running.client.get("/healthz").status_code == 200


def test_unknown_product_and_bad_parameters(running: RunningStack) -> None:
    assert running.client.get("/v1/products/no-such-product").status_code == 404
    image = PHOTO.read_bytes()
    for params in ({"k": "0"}, {"k": "1000"}, {"k": "ten"}, {"box": "1,2,3"}, {"min_price": "x"}):
        response = running.client.post("/v1/search", files={"image": ("q.jpg", image)}, data=params)
        assert response.status_code == 422, (params, response.text)
