"""Shop now on video through the real gateway app: fake gRPC backends, a real Redis, real clips."""

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.gateway.app import create_app
from services.gateway.video.frames import frame_at
from tests.paths import DATASETS
from tests.service.gateway_fakes import FakeBackends, detection, fake_backends
from tests.unit.test_video_container import audio_only, avi_claiming, clip, overlong_clip, zero_frame_video

VIDEOS = DATASETS / "videos"
AISLE = VIDEOS / "clips" / "store-aisle-detection.mp4"  # 480x270, 15 fps, 4.47 s
AISLE_URL = "/media/clips/store-aisle-detection.mp4"
SHELF = (0.0, 0.0, 240.0, 270.0)  # the left half of the frame, in working (= original) pixels

pytestmark = pytest.mark.skipif(not AISLE.is_file(), reason="demo clips not available")


@pytest.fixture(scope="module")
def backends() -> Iterator[FakeBackends]:
    with fake_backends() as fakes:
        fakes.indexer.add("grey-mug", (1, 1, 1), title="Grey mug", category="tableware")
        fakes.indexer.add("red-bowl", (1, 0, 0), title="Red bowl", category="tableware")
        fakes.indexer.add("blue-plate", (0, 0, 1), title="Blue plate", category="tableware")
        fakes.indexer.add("brown-tray", (0.6, 0.4, 0.2), title="Brown tray", category="tableware")
        fakes.detector.detections = [detection(SHELF, "shelf", 0.9)]
        yield fakes


@contextmanager
def video_gateway(
    backends: FakeBackends, data_dir: Path, redis_url: str, **overrides: Any
) -> Iterator[TestClient]:
    settings = backends.settings(data_dir=data_dir, redis_url=redis_url, media_dir=VIDEOS, **overrides)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def client(
    backends: FakeBackends, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    with video_gateway(backends, tmp_path_factory.mktemp("data"), redis_url) as test_client:
        yield test_client


def shop_frame(client: TestClient, data: bytes | None = None, **fields: Any) -> httpx.Response:
    files = {"video": ("clip.mp4", data, "video/mp4")} if data is not None else None
    response: httpx.Response = client.post("/v1/shop/frame", files=files, data=fields)
    return response


def png(pixels: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def results(body: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(o["label"], [m["product_id"] for m in o["matches"]]) for o in body["objects"]]


def test_shop_frame_searches_the_frame_shown_at_t(client: TestClient) -> None:
    response = shop_frame(client, AISLE.read_bytes(), t="1.234", k="2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frame_time_s"] == pytest.approx(1.2)  # frames every 1/15 s: 1.2 is shown at 1.234
    assert body["image"] == {"width": 480, "height": 270}
    assert body["timings_ms"]["decode"] > 0
    # The same answer as a photo search of that exact frame (sent losslessly), less the whole-image
    # object a photo answer starts with: a paused frame is a scene, searched by its products.
    photo = client.post(
        "/v1/search", files={"image": ("f.png", png(frame_at(AISLE, 1.2).rgb), "image/png")}, data={"k": "2"}
    ).json()
    assert results(photo)[0][0] == "image"
    assert results(body) == results(photo)[1:]
    assert results(body)[0][0] == "shelf"
    assert len(results(body)[0][1]) == 2


def test_shop_frame_reads_a_media_url_and_applies_filters(client: TestClient) -> None:
    response = shop_frame(client, video_url=AISLE_URL, t="4.46", k="5", min_similarity="0.99")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frame_time_s"] == pytest.approx(4.4)
    assert all(m["similarity"] >= 0.99 for o in body["objects"] for m in o["matches"])


@pytest.mark.parametrize(
    ("data", "fields", "status", "code", "detail"),
    [
        (b"name,price\nbag,10\n" * 40, {"t": "1"}, 415, "video_not_video", "not a video"),
        (AISLE.read_bytes(), {"t": "9.5"}, 422, "video_past_end", "past the end of the video (4.467s long)"),
        (AISLE.read_bytes()[:150_000], {"t": "3"}, 422, "video_truncated", "the file is truncated"),
        (
            (VIDEOS / "clips" / "bottle-detection.mp4").read_bytes()[:200_000],
            {"t": "1"},
            422,
            "video_undecodable",
            "truncated or corrupt",
        ),
        (AISLE.read_bytes(), {"t": "1", "video_url": AISLE_URL}, 422, "invalid_argument", "exactly one"),
        (None, {"t": "1"}, 422, "invalid_argument", "exactly one"),
        (
            None,
            {"t": "1", "video_url": "/media/clips/nope.mp4"},
            422,
            "video_url_not_found",
            "does not exist",
        ),
        (None, {"t": "-1", "video_url": AISLE_URL}, 422, "validation_error", ""),
        (None, {"video_url": AISLE_URL}, 422, "validation_error", ""),
    ],
)
def test_shop_frame_errors(
    client: TestClient, data: bytes | None, fields: dict[str, str], status: int, code: str, detail: str
) -> None:
    response = shop_frame(client, data, **fields)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert detail in str(response.json()["detail"])


def wait_ready(client: TestClient, status_url: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(status_url).json()
        if body["status"] in ("ready", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"not indexed in {timeout_s} s: {body}")


def test_registered_video_is_pre_indexed_and_answered_from_the_cache(client: TestClient) -> None:
    response = client.post("/v1/videos", files={"video": ("aisle.mp4", AISLE.read_bytes(), "video/mp4")})
    assert response.status_code == 202, response.text
    video_id, status_url = response.json()["video_id"], response.json()["status_url"]
    assert status_url == f"/v1/videos/{video_id}"
    assert response.headers["location"] == status_url
    status = wait_ready(client, status_url)
    assert status["status"] == "ready", status
    assert status["duration_s"] == pytest.approx(4.4667, abs=1e-3)
    assert status["frames_sampled"] == 9  # 0, 0.5, ..., 4.0
    assert 1 <= status["frames_indexed"] <= 9
    assert status["progress"] == 1.0
    markers = status["markers"]
    assert len(markers) == status["frames_indexed"]
    assert [m["t"] for m in markers] == sorted(m["t"] for m in markers)
    assert all(m["labels"] == ["shelf"] and m["top_product_id"] for m in markers)

    shop = client.get(f"/v1/videos/{video_id}/shop", params={"t": "3.1"})
    assert shop.status_code == 200, shop.text
    cached = shop.json()
    assert cached["cached"] is True
    assert cached["frame_time_s"] <= 3.1
    assert cached["frame_time_s"] in [m["t"] for m in markers]  # a searched frame, not a duplicate
    # The cached answer is that frame's search result.
    live = shop_frame(client, video_url=AISLE_URL, t=str(cached["frame_time_s"])).json()
    assert results(cached) == results(live)
    assert live["frame_time_s"] == cached["frame_time_s"]


def test_register_by_json_url_then_live_fallback_where_not_indexed(
    backends: FakeBackends, redis_url: str, tmp_path: Path
) -> None:
    with video_gateway(backends, tmp_path, redis_url, video_max_frames=2) as small:
        response = small.post("/v1/videos", json={"video_url": AISLE_URL})
        assert response.status_code == 202, response.text
        video_id = response.json()["video_id"]
        status = wait_ready(small, f"/v1/videos/{video_id}")
        assert (status["status"], status["frames_sampled"]) == ("ready", 2)  # 0 and 0.5 only
        shop = small.get(f"/v1/videos/{video_id}/shop", params={"t": "3.1"}).json()
        assert shop["cached"] is False
        assert shop["frame_time_s"] == pytest.approx(3.0667, abs=1e-3)
        assert results(shop)[0][0] == "shelf"
        past = small.get(f"/v1/videos/{video_id}/shop", params={"t": "60"})
        assert past.status_code == 422
        assert past.json()["code"] == "video_past_end"


def test_register_rejects_what_is_not_a_video(client: TestClient) -> None:
    response = client.post(
        "/v1/videos", files={"video": ("a.mp4", b"plain text, not a video" * 10, "video/mp4")}
    )
    assert response.status_code == 415
    assert response.json()["code"] == "video_not_video"
    assert client.post("/v1/videos", content=b"x", headers={"content-type": "video/mp4"}).status_code == 415
    assert client.post("/v1/videos", json={}).status_code == 422


def test_unknown_video_is_404(client: TestClient) -> None:
    for path in ("/v1/videos/" + "0" * 32, "/v1/videos/" + "0" * 32 + "/shop?t=1"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_videos_over_max_video_bytes_are_413(backends: FakeBackends, redis_url: str, tmp_path: Path) -> None:
    with video_gateway(backends, tmp_path, redis_url, max_video_bytes=100_000) as small:
        upload = small.post("/v1/videos", files={"video": ("a.mp4", AISLE.read_bytes(), "video/mp4")})
        assert upload.status_code == 413
        by_url = shop_frame(small, video_url=AISLE_URL, t="1")
        assert by_url.status_code == 413
        assert by_url.json()["code"] == "too_large"
    assert list((tmp_path / "videos").glob("*")) == []  # nothing kept of a rejected video


def test_register_rejects_unusable_videos_and_keeps_none(
    backends: FakeBackends, redis_url: str, tmp_path: Path
) -> None:
    moov_first = clip_moov_first(tmp_path)
    cases = [
        (overlong_clip(), 413, "video_too_long", "the limit is 1800s"),
        (audio_only(), 415, "video_no_video_stream", "audio only (aac)"),
        (zero_frame_video(), 422, "video_no_frames", "no frames"),
        (avi_claiming(10_000, 10_000), 413, "video_too_many_pixels", "10000x10000"),
        (moov_first[: len(moov_first) // 2], 422, "video_truncated", "the file is truncated"),
    ]
    with video_gateway(backends, tmp_path / "data", redis_url) as gateway:
        for data, status, code, detail in cases:
            response = gateway.post("/v1/videos", files={"video": ("v.mp4", data, "video/mp4")})
            assert response.status_code == status, response.text
            assert response.json()["code"] == code
            assert detail in response.json()["detail"]
    assert list((tmp_path / "data" / "videos").glob("*")) == []  # nothing kept of a rejected video


def test_the_duration_cap_applies_to_frames_too(
    backends: FakeBackends, redis_url: str, tmp_path: Path
) -> None:
    with video_gateway(backends, tmp_path, redis_url, video_max_duration_s=2.0) as short:
        for response in (
            shop_frame(short, AISLE.read_bytes(), t="1"),
            shop_frame(short, video_url=AISLE_URL, t="1"),
            short.post("/v1/videos", json={"video_url": AISLE_URL}),
        ):
            assert response.status_code == 413, response.text
            assert response.json() == {
                "code": "video_too_long",
                "detail": "the video is 4.5s long; the limit is 2s",
            }


def clip_moov_first(tmp_path: Path) -> bytes:
    """8 s at 5 fps with its index first: a cut copy still opens, its stream ends early."""
    return clip([n / 5 for n in range(40)], options={"movflags": "faststart"}, path=tmp_path / "c.mp4")
