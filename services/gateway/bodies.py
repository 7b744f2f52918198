"""Reading request bodies: uploads in bounded chunks, JSON with FastAPI's own error shape."""

from typing import Any, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile

from services.common.fetch import CHUNK_BYTES
from services.gateway.errors import ApiError

FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


def body_kind(request: Request) -> Literal["form", "json", "other"]:
    """What the request's Content-Type says its body is, for routes that take a form or JSON."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type in FORM_TYPES:
        return "form"
    if media_type == "application/json" or media_type.endswith("+json"):
        return "json"
    return "other"


async def read_upload(upload: UploadFile, max_bytes: int, what: str = "the image") -> bytes:
    """The uploaded file's bytes, failing (413) as soon as they pass ``max_bytes``."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(413, "too_large", f"{what} is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """The parsed JSON body; malformed JSON is a 422 shaped like FastAPI's validation errors."""
    try:
        return await request.json()
    except ValueError as exc:
        error = {
            "type": "json_invalid",
            "loc": ["body"],
            "msg": "JSON decode error",
            "ctx": {"error": str(exc)},
        }
        raise RequestValidationError([error]) from None
