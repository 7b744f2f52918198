"""Video frames with PyAV: the exact frame shown at time t, evenly spaced samples, and a cheap
near-duplicate test. Everything here blocks (demuxing, decoding): call it via asyncio.to_thread.

Times are seconds from the start of the video stream (its first timestamp is 0), which is what a
browser's ``video.currentTime`` reports for the same file.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.container
import av.video
import numpy as np
from PIL import Image

from services.common.errors import InvalidInput
from services.common.images import RGB, DecodedImage

Source = Path | bytes
THUMB_SIDE = 32
# A frame lasting longer than this past its timestamp means the stream stopped early (truncated).
_MAX_GAP_S = 1.0


class VideoError(InvalidInput):
    """An unusable video; ``reason`` is a stable code and ``status`` the HTTP status to answer."""

    def __init__(self, reason: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Frame:
    rgb: RGB  # (H, W, 3)
    time_s: float  # the frame's own timestamp, <= the requested time
    index: int  # position in the stream, from 0, at the stream's average frame rate


@dataclass(frozen=True)
class _Stream:
    stream: av.video.stream.VideoStream
    time_base: Fraction
    start_pts: int
    duration_s: float | None
    fps: float

    def seconds(self, pts: int) -> float:
        return float((pts - self.start_pts) * self.time_base)


def _looks_like_video(source: Source) -> bool:
    """A container signature in the first bytes: MP4/MOV (ftyp), Matroska/WebM (EBML), AVI."""
    if isinstance(source, bytes):
        head = source[:12]
    else:
        with source.open("rb") as file:
            head = file.read(12)
    return head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or head[8:12] == b"AVI "


@contextmanager
def _opened(source: Source) -> Iterator[tuple[av.container.InputContainer, _Stream]]:
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r")
    except (av.FFmpegError, ValueError, OSError):
        if _looks_like_video(source):
            raise VideoError(
                "undecodable", "the video file is truncated or corrupt: its container cannot be read"
            ) from None
        raise VideoError(
            "not_video", "the file is not a video (no container format FFmpeg reads)", 415
        ) from None
    try:
        yield container, _video_stream(container)
    finally:
        container.close()


def _video_stream(container: av.container.InputContainer) -> _Stream:
    # FFmpeg happily opens a still image as a one-frame "video"; a photo is not a video here.
    if container.format.name.endswith("_pipe") or container.format.name == "image2":
        raise VideoError("not_video", "the file is an image, not a video", 415)
    if not container.streams.video:
        raise VideoError("no_video_stream", "the file has no video stream", 415)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if stream.time_base is None:
        raise VideoError("undecodable", "the video stream has no time base")
    time_base = Fraction(stream.time_base)
    start = stream.start_time or 0
    duration: float | None = None
    if stream.duration:
        duration = float(stream.duration * time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    return _Stream(stream, time_base, start, duration, fps)


def _decode(container: av.container.InputContainer, info: _Stream) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time, frame) in decoding order, skipping frames without a timestamp."""
    try:
        for frame in container.decode(info.stream):
            if frame.pts is not None:
                yield info.seconds(frame.pts), frame
    except av.FFmpegError as exc:
        raise VideoError("undecodable", f"the video stream cannot be decoded: {exc}") from None


def _index(info: _Stream, time_s: float) -> int:
    return round(time_s * info.fps) if info.fps else 0


def _rgb(frame: av.VideoFrame) -> RGB:
    return cast(RGB, frame.to_ndarray(format="rgb24"))  # (H, W, 3)


def _last_at_or_before(
    container: av.container.InputContainer, info: _Stream, t: float
) -> tuple[float, av.VideoFrame] | None:
    best = None
    for time_s, frame in _decode(container, info):
        if time_s > t + 1e-6:
            break
        best = time_s, frame
    return best


def frame_at(source: Source, t: float) -> Frame:
    """The frame displayed at ``t`` seconds: seek to the keyframe before it, decode forward."""
    if not t >= 0:  # also rejects NaN
        raise VideoError("bad_time", f"t must be a number of seconds >= 0; got {t}")
    with _opened(source) as (container, info):
        if info.duration_s is not None and t > info.duration_s:
            raise VideoError(
                "past_end", f"t={t:g}s is past the end of the video ({info.duration_s:.3f}s long)"
            )
        target = info.start_pts + int(t / info.time_base)
        try:
            container.seek(target, stream=info.stream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            raise VideoError("undecodable", f"the video cannot be seeked: {exc}") from None
        found = _last_at_or_before(container, info, t)
        if found is None:  # some demuxers land past the target: decode from the start instead
            container.seek(info.start_pts, stream=info.stream, backward=True, any_frame=False)
            found = _last_at_or_before(container, info, t)
        if found is None:
            raise VideoError("undecodable", "no frame of the video stream could be decoded")
        time_s, frame = found
        if t - time_s > _MAX_GAP_S:
            raise VideoError(
                "truncated", f"the video stream ends at {time_s:.3f}s, before t={t:g}s: the file is truncated"
            )
        return Frame(_rgb(frame), time_s, _index(info, time_s))


def duration_s(source: Source) -> float | None:
    with _opened(source) as (_, info):
        return info.duration_s


def sample_frames(path: Path, interval_s: float, max_frames: int) -> Iterator[tuple[float, RGB]]:
    """(time, frame) every ``interval_s`` seconds (the frame shown then), at most ``max_frames``.
    Decodes sequentially (cheaper than one seek per sample); only kept frames become RGB."""
    with _opened(path) as (container, info):
        count, next_t = 0, 0.0
        previous: av.VideoFrame | None = None
        previous_t = 0.0
        for time_s, frame in _decode(container, info):
            if previous is not None and time_s > next_t + 1e-6:
                yield previous_t, _rgb(previous)  # the frame shown at next_t
                count += 1
                if count >= max_frames:
                    return
                while next_t + 1e-6 < time_s:  # slow frame rates: one sample per distinct frame
                    next_t += interval_s
            previous, previous_t = frame, time_s
        end = info.duration_s if info.duration_s is not None else previous_t
        if previous is not None and next_t <= max(end, previous_t) + 1e-6:
            yield previous_t, _rgb(previous)


def thumbnail(rgb: RGB) -> np.ndarray:
    """(32, 32) float32 grey in 0..1: small enough to compare frames for free."""
    grey = Image.fromarray(rgb).convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32) / 255.0


def near_duplicate(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """Mean absolute grey difference of two thumbnails below ``threshold`` (0..1)."""
    return float(np.abs(a - b).mean()) < threshold


def to_decoded(rgb: RGB, max_side: int) -> DecodedImage:
    """A frame as the search pipeline's input: original size kept, pixels downscaled like photos."""
    height, width = rgb.shape[:2]
    if max_side and max(width, height) > max_side:
        image = Image.fromarray(rgb)
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        return DecodedImage(np.asarray(image, dtype=np.uint8), width, height)
    return DecodedImage(rgb, width, height)
