"""The web UI: three static pages and their scripts and styles, served by the gateway itself so a
shopper needs nothing but a browser (no build step, no CDN)."""

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from services.gateway.errors import ApiError

router = APIRouter(include_in_schema=False)
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Flat names only: no slash and no dot-dot can reach outside the static folder.
STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(html|js|css|svg)")


def _file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not STATIC_NAME.fullmatch(name) or not path.is_file():
        raise ApiError(404, "not_found", f"no static file {name!r}")
    # no-cache = revalidate (ETag) on each load: a deploy is picked up at once, unchanged files cost a 304.
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


@router.get("/")
async def photo_page() -> FileResponse:
    return _file("index.html")


@router.get("/video")
async def video_page() -> FileResponse:
    return _file("video.html")


@router.get("/catalog")
async def catalog_page() -> FileResponse:
    return _file("catalog.html")


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    return _file(name)
