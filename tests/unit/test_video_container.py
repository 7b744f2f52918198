"""services.gateway.video.container: every kind of unusable video gets its own reason and status,
on videos made here with PyAV (the generators are reused by the service and e2e tests)."""

import io
import struct
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest
from av.audio.stream import AudioStream
from av.video.stream import VideoStream
from PIL import Image

from services.common.images import heif_supported
from services.gateway.video.container import VideoError, VideoLimits, probe
from services.gateway.video.frames import frame_at

_MS = Fraction(1, 1000)


def clip(
    times: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0),
    fmt: str = "mp4",
    size: tuple[int, int] = (64, 48),
    options: dict[str, str] | None = None,
    path: Path | None = None,
) -> bytes:
    """A video with one frame at each of ``times`` (seconds), each a different grey. Written
    through ``path`` when given (MP4's faststart rewrites the file by name)."""
    codec = "libvpx" if fmt == "webm" else "mpeg4"
    out: io.BytesIO | str = io.BytesIO() if path is None else str(path)
    with av.open(out, "w", format=fmt, container_options=options or {}) as container:
        stream = cast(VideoStream, container.add_stream(codec, rate=2))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = _MS
        for number, t in enumerate(times):
            rgb = np.full((size[1], size[0], 3), (40 * number) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = round(t * 1000), _MS
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue() if isinstance(out, io.BytesIO) else Path(out).read_bytes()


def overlong_clip(seconds: float = 7200.0) -> bytes:
    """Two frames, the second ``seconds`` in: a tiny file that announces a long video."""
    return clip((0.0, seconds))


def _silence(container: av.container.OutputContainer, stream: AudioStream, seconds: float) -> None:
    samples = np.zeros((1, 1024), np.int16 if stream.codec_context.name == "pcm_s16le" else np.float32)
    sample_format = "s16" if samples.dtype == np.int16 else "fltp"
    pts = 0
    while pts < seconds * 44100:
        frame = av.AudioFrame.from_ndarray(samples, format=sample_format, layout="mono")
        frame.sample_rate, frame.pts = 44100, pts
        container.mux(stream.encode(frame))
        pts += 1024
    container.mux(stream.encode(None))


def audio_only(fmt: str = "mp4", codec: str = "aac") -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        _silence(container, cast(AudioStream, container.add_stream(codec, rate=44100)), 1.0)
    return out.getvalue()


def zero_frame_video() -> bytes:
    """A Matroska file whose video track holds no frame (its audio track a second of silence)."""
    out = io.BytesIO()
    with av.open(out, "w", format="matroska") as container:
        video = container.add_stream("mpeg4", rate=2)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        container.start_encoding()
        _silence(container, audio, 1.0)
    return out.getvalue()


def avi_claiming(width: int, height: int) -> bytes:
    """A raw-video AVI of 64x48 frames whose headers claim ``width`` x ``height``."""
    out = io.BytesIO()
    with av.open(out, "w", format="avi") as container:
        stream = container.add_stream("rawvideo", rate=2)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for number in range(2):
            rgb = np.full((48, 64, 3), 100, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue().replace(struct.pack("<II", 64, 48), struct.pack("<II", width, height))


def still(fmt: str, **kwargs: object) -> bytes:
    heif_supported()
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, fmt, **kwargs)
    return out.getvalue()


def expect(
    source: bytes, reason: str, status: int, message: str, limits: VideoLimits = VideoLimits()
) -> None:
    """Both the registration check and a frame search refuse ``source`` the same way."""
    for check in (lambda: probe(source, limits), lambda: frame_at(source, 0.0, limits)):
        with pytest.raises(VideoError) as info:
            check()
        assert (info.value.reason, info.value.status) == (reason, status), info.value.message
        assert message in info.value.message


def test_a_good_clip_probes_to_its_duration() -> None:
    assert probe(clip(), VideoLimits()) == pytest.approx(2.5, abs=0.01)
    assert frame_at(clip(), 1.2).time_s == pytest.approx(1.0)


def test_a_video_over_the_duration_cap_is_413() -> None:
    expect(overlong_clip(), "too_long", 413, "the video is 7200.5s long; the limit is 1800s")
    expect(clip(), "too_long", 413, "the limit is 2s", VideoLimits(max_duration_s=2.0))


def test_a_stream_without_a_header_duration_is_measured_by_its_packets() -> None:
    live = clip((0.0, 1.0, 2.0, 3.0), fmt="webm", options={"live": "1"})  # no duration, no cues
    with av.open(io.BytesIO(live), mode="r") as container:
        assert container.duration is None
    assert probe(live, VideoLimits()) == pytest.approx(3.0, abs=0.6)
    with pytest.raises(VideoError, match="the limit is 2s") as info:
        probe(live, VideoLimits(max_duration_s=2.0))
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("fmt", "codec", "name"),
    [("mp4", "aac", "aac"), ("mp3", "libmp3lame", "mp3"), ("wav", "pcm_s16le", "pcm_s16le")],
)
def test_audio_only_files_are_415(fmt: str, codec: str, name: str) -> None:
    expect(audio_only(fmt, codec), "no_video_stream", 415, f"audio only ({name}): no video stream")


def test_a_video_track_without_frames_is_422() -> None:
    with pytest.raises(VideoError, match="the video stream has no frames") as info:
        probe(zero_frame_video(), VideoLimits())
    assert (info.value.reason, info.value.status) == ("no_frames", 422)
    with pytest.raises(VideoError, match="no frame of the video stream") as info:
        frame_at(zero_frame_video(), 0.5)
    assert (info.value.reason, info.value.status) == ("no_frames", 422)


def test_absurd_and_tiny_resolutions_are_refused_before_decoding() -> None:
    expect(avi_claiming(10_000, 10_000), "too_many_pixels", 413, "10000x10000 pixels a frame")
    expect(avi_claiming(8, 6), "too_small", 422, "each side must be at least 16 px")


def test_a_truncated_stream_is_caught_at_registration(tmp_path: Path) -> None:
    times = [n / 5 for n in range(40)]  # 8 s at 5 fps; the index (moov) first, as streamed files are
    data = clip(times, options={"movflags": "faststart"}, path=tmp_path / "clip.mp4")
    assert probe(data, VideoLimits()) == pytest.approx(8.3)  # the last frame lasts 0.5 s
    with pytest.raises(VideoError, match=r"ends at \d\.\d+s of its 8\.\d+s: the file is truncated") as info:
        probe(data[: len(data) // 2], VideoLimits())
    assert (info.value.reason, info.value.status) == ("truncated", 422)


def test_a_cut_container_is_undecodable() -> None:
    data = clip([n / 5 for n in range(20)])  # the index at the end: a cut file has none
    expect(data[: len(data) // 2], "undecodable", 422, "truncated or corrupt")


@pytest.mark.parametrize(
    "data",
    [
        still("HEIF"),
        still("AVIF"),
        still("GIF", save_all=True, append_images=[Image.new("RGB", (64, 48), "blue")]),
        still("PNG", save_all=True, append_images=[Image.new("RGB", (64, 48), "blue")]),
        still("WEBP"),
    ],
    ids=["heic", "avif", "animated-gif", "apng", "webp"],
)
def test_photos_are_not_videos(data: bytes) -> None:
    expect(data, "not_video", 415, "the file is an image, not a video")
