"""Request and response bodies of the video routes."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.common.catalog import MAX_URL_CHARS
from services.gateway.schemas import SearchResponse

VIDEO_URL_HELP = "http(s) URL or a /media/... path"
_VIDEO_URL = {"type": "string", "maxLength": MAX_URL_CHARS, "description": VIDEO_URL_HELP}
# POST /v1/videos reads its body itself (a form, or JSON for a URL): this is what it accepts.
REGISTER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "title": "VideoForm",
                    "type": "object",
                    "properties": {
                        "video": {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                            "description": "the video; any format FFmpeg reads",
                        },
                        "video_url": _VIDEO_URL,
                    },
                }
            },
            "application/json": {
                "schema": {"title": "VideoUrl", "type": "object", "properties": {"video_url": _VIDEO_URL}}
            },
        },
    }
}

VideoStatus = Literal["queued", "indexing", "ready", "failed"]


class FrameSearchResponse(SearchResponse):
    frame_time_s: float = Field(description="timestamp of the frame searched (the one shown at t)")


class VideoShopResponse(FrameSearchResponse):
    cached: bool = Field(description="true when answered from the pre-indexed frame nearest to t")


class VideoRegistered(BaseModel):
    video_id: str
    status_url: str


class Marker(BaseModel):
    t: float = Field(description="frame time in seconds")
    labels: list[str] = Field(description="labels of the objects found in that frame")
    top_product_id: str | None = Field(description="best match of the most prominent object")


class VideoStatusOut(BaseModel):
    video_id: str
    status: VideoStatus
    duration_s: float | None
    frames_sampled: int
    frames_indexed: int = Field(description="frames searched; near-duplicates of the previous are not")
    progress: float = Field(ge=0, le=1)
    message: str
    markers: list[Marker] = Field(description="where products appear, in time order")
