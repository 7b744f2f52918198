"""Video frames with PyAV: the exact frame shown at time t, evenly spaced samples, and a cheap
near-duplicate test. Everything here blocks (demuxing, decoding): call it via asyncio.to_thread.

Times are seconds from the start of the video stream (its first timestamp is 0), which is what a
browser's ``video.currentTime`` reports for the same file.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import av.container
import numpy as np
from PIL import Image

from services.common.images import RGB, DecodedImage
from services.gateway.video.container import (
    MAX_GAP_S,
    Source,
    Stream,
    VideoError,
    VideoLimits,
    decode,
    opened,
)

THUMB_SIDE = 32


@dataclass(frozen=True)
class Frame:
    rgb: RGB  # (H, W, 3)
    time_s: float  # the frame's own timestamp, <= the requested time
    index: int  # position in the stream, from 0, at the stream's average frame rate


def _index(info: Stream, time_s: float) -> int:
    return round(time_s * info.fps) if info.fps else 0


def _rgb(frame: av.VideoFrame) -> RGB:
    return cast(RGB, frame.to_ndarray(format="rgb24"))  # (H, W, 3)


def _last_at_or_before(
    container: av.container.InputContainer, info: Stream, t: float
) -> tuple[float, av.VideoFrame] | None:
    best = None
    for time_s, frame in decode(container, info):
        if time_s > t + 1e-6:
            break
        best = time_s, frame
    return best


def _seek(container: av.container.InputContainer, info: Stream, pts: int) -> bool:
    try:
        container.seek(pts, stream=info.stream, backward=True, any_frame=False)
    except av.FFmpegError:
        return False
    return True


def frame_at(source: Source, t: float, limits: VideoLimits = VideoLimits()) -> Frame:
    """The frame displayed at ``t`` seconds: seek to the keyframe before it, decode forward."""
    if not t >= 0:  # also rejects NaN
        raise VideoError("bad_time", f"t must be a number of seconds >= 0; got {t}")
    with opened(source, limits) as (container, info):
        if info.duration_s is not None and t > info.duration_s:
            raise VideoError(
                "past_end", f"t={t:g}s is past the end of the video ({info.duration_s:.3f}s long)"
            )
        # An unseekable stream (no index) is decoded from where it was opened: its start.
        seeked = _seek(container, info, info.start_pts + int(t / info.time_base))
        found = _last_at_or_before(container, info, t)
        if found is None and seeked:  # some demuxers land past the target: decode from the start
            _seek(container, info, info.start_pts)
            found = _last_at_or_before(container, info, t)
        if found is None:
            raise VideoError("no_frames", "no frame of the video stream could be decoded")
        time_s, frame = found
        if t - time_s > MAX_GAP_S:
            raise VideoError(
                "truncated", f"the video stream ends at {time_s:.3f}s, before t={t:g}s: the file is truncated"
            )
        return Frame(_rgb(frame), time_s, _index(info, time_s))


def duration_s(source: Source, limits: VideoLimits = VideoLimits()) -> float | None:
    """The duration the header announces (None when it has none), after the container checks."""
    with opened(source, limits) as (_, info):
        return info.duration_s


def sample_frames(
    path: Path, interval_s: float, max_frames: int, limits: VideoLimits = VideoLimits()
) -> Iterator[tuple[float, RGB]]:
    """(time, frame) every ``interval_s`` seconds (the frame shown then), at most ``max_frames``.
    Decodes sequentially (cheaper than one seek per sample); only kept frames become RGB."""
    with opened(path, limits) as (container, info):
        count, next_t = 0, 0.0
        previous: av.VideoFrame | None = None
        previous_t = 0.0
        for time_s, frame in decode(container, info):
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
