"""Opening an untrusted video: the container and stream checks every video route shares, each
failure a :class:`VideoError` with a stable reason. Blocking (demuxing, decoding): call it via
asyncio.to_thread. Limits and what each failure answers: docs/inputs.md.
"""

import contextlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.video

from services.common.errors import InvalidInput
from services.gateway.config import GatewaySettings

Source = Path | bytes
# A frame lasting longer than this past its timestamp means the stream stopped early (truncated).
MAX_GAP_S = 1.0
# FFmpeg opens stills as one-frame "videos": a photo (even an animated GIF) is not a video here.
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "apng"})
_IMAGE_BRANDS = frozenset({"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif", "avis"})


class VideoError(InvalidInput):
    """An unusable video; ``reason`` is a stable code and ``status`` the HTTP status to answer."""

    def __init__(self, reason: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class VideoLimits:
    max_duration_s: float = 1800.0
    max_pixels: int = 40_000_000  # per frame, like a photo
    min_side: int = 16

    @classmethod
    def of(cls, settings: GatewaySettings) -> "VideoLimits":
        return cls(settings.video_max_duration_s, settings.max_pixels, settings.min_side)


@dataclass(frozen=True)
class Stream:
    stream: av.video.stream.VideoStream
    time_base: Fraction
    start_pts: int
    duration_s: float | None
    fps: float
    limits: VideoLimits

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
def opened(source: Source, limits: VideoLimits) -> Iterator[tuple[av.container.InputContainer, Stream]]:
    """The container and its checked video stream (format, duration and frame-size caps)."""
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
        yield container, _video_stream(container, limits)
    finally:
        container.close()


def _video_stream(container: av.container.InputContainer, limits: VideoLimits) -> Stream:
    demuxer = container.format.name
    brand = str(container.metadata.get("major_brand", "")).strip().lower()
    if demuxer.endswith("_pipe") or demuxer in _IMAGE_DEMUXERS or brand in _IMAGE_BRANDS:
        raise VideoError("not_video", "the file is an image, not a video", 415)
    if not container.streams.video:
        if container.streams.audio:
            codec = container.streams.audio[0].codec_context.codec.canonical_name
            raise VideoError("no_video_stream", f"the file is audio only ({codec}): no video stream", 415)
        raise VideoError("no_video_stream", "the file has no video stream", 415)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    check_frame_size(stream.width, stream.height, limits)
    if stream.time_base is None:
        raise VideoError("undecodable", "the video stream has no time base")
    time_base = Fraction(stream.time_base)
    duration: float | None = None
    if stream.duration:
        duration = float(stream.duration * time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    if duration is not None:
        check_duration(duration, limits)
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    return Stream(stream, time_base, stream.start_time or 0, duration, fps, limits)


def check_frame_size(width: int, height: int, limits: VideoLimits) -> None:
    if width <= 0 or height <= 0:
        raise VideoError("undecodable", "the video stream has no frame size: its codec cannot be read")
    if width * height > limits.max_pixels:
        raise VideoError(
            "too_many_pixels",
            f"the video is {width}x{height} pixels a frame; the limit is {limits.max_pixels} pixels",
            413,
        )
    if min(width, height) < limits.min_side:
        raise VideoError(
            "too_small", f"the video is {width}x{height}; each side must be at least {limits.min_side} px"
        )


def check_duration(duration_s: float, limits: VideoLimits) -> None:
    if duration_s > limits.max_duration_s:
        raise VideoError(
            "too_long",
            f"the video is {duration_s:.1f}s long; the limit is {limits.max_duration_s:g}s",
            413,
        )


def decode(container: av.container.InputContainer, info: Stream) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time, frame) in decoding order, skipping frames without a timestamp."""
    try:
        for frame in container.decode(info.stream):
            if frame.pts is not None:
                check_frame_size(frame.width, frame.height, info.limits)  # streams may change size
                yield info.seconds(frame.pts), frame
    except av.FFmpegError as exc:
        raise VideoError("undecodable", f"the video stream cannot be decoded: {exc}") from None


def probe(source: Source, limits: VideoLimits) -> float | None:
    """Checks a whole video before it is kept: a first frame decodes, and the stream reaches the
    end its header announces (without decoding the rest). Returns the duration in seconds."""
    with opened(source, limits) as (container, info):
        if next(decode(container, info), None) is None:
            raise VideoError("no_frames", "the video stream has no frames")
        end = _end_time(container, info)
        if info.duration_s is None:  # no header duration (live recordings): the packets tell
            check_duration(end, limits)
            return end
        if end < info.duration_s - MAX_GAP_S:
            raise VideoError(
                "truncated",
                f"the video stream ends at {end:.3f}s of its {info.duration_s:.3f}s: the file is truncated",
            )
        return info.duration_s


def _end_time(container: av.container.InputContainer, info: Stream) -> float:
    """Where the last packet of the stream ends; demuxes (cheap) from near the announced end."""
    if info.duration_s is not None and info.duration_s > 2 * MAX_GAP_S:
        target = info.start_pts + int((info.duration_s - 2 * MAX_GAP_S) / info.time_base)
        with contextlib.suppress(av.FFmpegError):  # unseekable: read on from the first frame
            container.seek(target, stream=info.stream, backward=True, any_frame=False)
    end = 0.0
    try:
        for packet in container.demux(info.stream):
            if packet.pts is not None:
                end = max(end, info.seconds(packet.pts + (packet.duration or 0)))
    except av.FFmpegError:
        pass  # a damaged tail ends the stream where it breaks: the caller compares the end
    return end
