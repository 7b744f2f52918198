"""services.gateway.video.frames on the real demo clips, and on a WebM transcoded here."""

import io
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest
from av.video.stream import VideoStream
from PIL import Image

from services.gateway.video.container import VideoError
from services.gateway.video.frames import (
    duration_s,
    frame_at,
    near_duplicate,
    sample_frames,
    thumbnail,
    to_decoded,
)
from tests.paths import DATASETS

CLIPS = DATASETS / "videos" / "clips"
AISLE = CLIPS / "store-aisle-detection.mp4"  # 480x270, 15 fps, 4.47 s, H.264
BOTTLES = CLIPS / "bottle-detection.mp4"  # 640x360, 29.8 fps, 39.9 s, index (moov) at the end

pytestmark = pytest.mark.skipif(not AISLE.is_file(), reason="demo clips not available")


def decode_all(source: Path | bytes) -> list[tuple[float, np.ndarray]]:
    """Every frame, in order, decoded sequentially: the reference frame_at must agree with."""
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r") as container:
        return [
            (f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0) if f.time is not None
        ]


def reference_at(frames: list[tuple[float, np.ndarray]], t: float) -> tuple[int, float, np.ndarray]:
    index = max(i for i, (time_s, _) in enumerate(frames) if time_s <= t + 1e-9)
    return index, frames[index][0], frames[index][1]


@pytest.fixture(scope="module")
def aisle_frames() -> list[tuple[float, np.ndarray]]:
    return decode_all(AISLE)


@pytest.fixture(scope="module")
def webm() -> bytes:
    """The first 3 s of the aisle clip as VP9 (VP8 if this PyAV wheel lacks VP9) in WebM."""
    codec = "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
    out = io.BytesIO()
    with av.open(str(AISLE), mode="r") as source, av.open(out, "w", format="webm") as target:
        stream = cast(VideoStream, target.add_stream(codec, rate=15))
        stream.width, stream.height, stream.pix_fmt = 480, 270, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        stream.codec_context.gop_size = 15  # a keyframe every second: seeking must decode forward
        for frame in source.decode(video=0):
            if frame.time is not None and frame.time >= 3.0:
                break
            target.mux(stream.encode(frame.reformat(format="yuv420p")))
        target.mux(stream.encode(None))
    return out.getvalue()


@pytest.mark.parametrize("t", [0.0, 0.05, 1.0, 1.234, 2.99, 4.4, 4.46])
def test_frame_at_is_the_frame_displayed_at_t(aisle_frames: list[tuple[float, np.ndarray]], t: float) -> None:
    frame = frame_at(AISLE, t)
    index, time_s, pixels = reference_at(aisle_frames, t)
    assert frame.index == index
    assert frame.time_s == pytest.approx(time_s)
    assert frame.time_s <= t
    assert frame.rgb.shape == (270, 480, 3)
    assert frame.rgb.dtype == np.uint8
    # Same frame, decoded by two routes (seek vs sequential): the pixels agree.
    assert float(np.abs(frame.rgb.astype(np.int16) - pixels).mean()) < 1.0


def test_frame_at_reads_bytes_and_a_long_gop_clip_mid_way() -> None:
    t = 23.7  # far from the start: the seek must land on a keyframe before t, then decode forward
    frame = frame_at(BOTTLES.read_bytes(), t)
    last: tuple[int, float, av.VideoFrame] | None = None  # sequentially: the last frame <= t
    with av.open(str(BOTTLES), mode="r") as container:
        for index, decoded in enumerate(container.decode(video=0)):
            if decoded.time is None or decoded.time > t:
                break
            last = index, decoded.time, decoded
    assert last is not None
    index, time_s, pixels = last[0], last[1], last[2].to_ndarray(format="rgb24")
    assert abs(frame.index - index) <= 1
    assert frame.time_s == pytest.approx(time_s)
    assert float(np.abs(frame.rgb.astype(np.int16) - pixels).mean()) < 1.0


@pytest.mark.parametrize("t", [0.0, 0.7, 1.5, 2.93])
def test_frame_at_in_a_webm(webm: bytes, t: float) -> None:
    frame = frame_at(webm, t)
    index, time_s, pixels = reference_at(decode_all(webm), t)
    assert frame.index == index
    assert frame.time_s == pytest.approx(time_s)
    assert float(np.abs(frame.rgb.astype(np.int16) - pixels).mean()) < 1.0


def test_time_past_the_end_names_the_duration() -> None:
    with pytest.raises(VideoError, match=r"past the end of the video \(4\.467s long\)") as info:
        frame_at(AISLE, 5.0)
    assert (info.value.reason, info.value.status) == ("past_end", 422)


def test_negative_or_nan_time_is_rejected() -> None:
    for t in (-0.1, float("nan")):
        with pytest.raises(VideoError, match="t must be"):
            frame_at(AISLE, t)


def test_a_file_that_is_not_a_video_is_415() -> None:
    for data in (b"name,price\nbag,10\n" * 50, _jpeg()):
        with pytest.raises(VideoError, match="not a video") as info:
            frame_at(data, 0.0)
        assert info.value.status == 415


def test_truncated_mp4_with_its_index_at_the_end_is_undecodable() -> None:
    data = BOTTLES.read_bytes()
    with pytest.raises(VideoError, match="truncated or corrupt") as info:
        frame_at(data[: len(data) // 2], 1.0)
    assert (info.value.reason, info.value.status) == ("undecodable", 422)


def test_truncated_mp4_with_its_index_first_says_where_the_stream_ends() -> None:
    data = AISLE.read_bytes()
    with pytest.raises(VideoError, match=r"ends at 1\.\d+s, before t=3s") as info:
        frame_at(data[: len(data) // 2], 3.0)
    assert info.value.reason == "truncated"


def test_sample_frames_takes_the_frame_shown_at_each_step(
    aisle_frames: list[tuple[float, np.ndarray]],
) -> None:
    samples = list(sample_frames(AISLE, 0.5, 100))
    assert len(samples) == 9  # 0, 0.5, ..., 4.0 of a 4.47 s clip
    for step, (time_s, pixels) in enumerate(samples):
        _, expected_t, expected = reference_at(aisle_frames, step * 0.5)
        assert time_s == pytest.approx(expected_t)
        assert np.array_equal(pixels, expected)
    assert len(list(sample_frames(AISLE, 0.5, 3))) == 3
    assert duration_s(AISLE) == pytest.approx(4.4667, abs=1e-3)


def test_near_duplicates(aisle_frames: list[tuple[float, np.ndarray]]) -> None:
    first, next_one = thumbnail(aisle_frames[0][1]), thumbnail(aisle_frames[1][1])
    later = thumbnail(aisle_frames[-1][1])
    assert first.shape == (32, 32)
    assert near_duplicate(first, first, 0.001)
    assert near_duplicate(first, next_one, 0.03)  # 1/15 s apart: the same scene
    assert not near_duplicate(first, later, 0.03)  # 4.4 s later the camera has moved
    black, white = np.zeros((90, 160, 3), np.uint8), np.full((90, 160, 3), 255, np.uint8)
    assert not near_duplicate(thumbnail(black), thumbnail(white), 0.5)


def test_to_decoded_downscales_like_photos() -> None:
    rgb = np.zeros((1080, 1920, 3), np.uint8)
    decoded = to_decoded(rgb, 1024)
    assert (decoded.width, decoded.height, decoded.pixels.shape) == (1920, 1080, (576, 1024, 3))
    assert to_decoded(rgb[:270, :480], 1024).pixels.shape == (270, 480, 3)


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "JPEG")
    return buffer.getvalue()
