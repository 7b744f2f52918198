"""Search routes: photo search and "more like this"."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from services.common.catalog import MAX_URL_CHARS
from services.common.gen.visualsearch.v1 import indexer_pb2
from services.gateway.bodies import read_upload
from services.gateway.config import MAX_K_LIMIT
from services.gateway.deps import GatewayState, ProductId, State
from services.gateway.errors import ApiError, error_responses
from services.gateway.geometry import parse_box
from services.gateway.metrics import StageTimer
from services.gateway.pipeline import SearchQuery, search_image
from services.gateway.schemas import MatchOut, SearchResponse, SimilarResponse

router = APIRouter(tags=["search"])


def _check_k(state: GatewayState, k: int) -> int:
    if k > state.settings.max_k:
        raise ApiError(422, "invalid_argument", f"k must be at most {state.settings.max_k}; got {k}")
    return k


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    responses=error_responses(400, 413, 415, 422, 502, 503),
    summary="Find the products in a photo and the catalog products that look like each",
)
async def search(
    state: State,
    image: Annotated[
        UploadFile | None, File(description="the photo; JPEG, PNG, GIF, WebP, BMP or TIFF")
    ] = None,
    image_url: Annotated[
        str | None, Form(max_length=MAX_URL_CHARS, description="fetch the photo from here instead")
    ] = None,
    box: Annotated[
        str | None,
        Form(
            max_length=200,
            description="x1,y1,x2,y2 in original image pixels: search only this region, without detection",
        ),
    ] = None,
    detect: Annotated[bool, Form(description="false searches the whole image")] = True,
    k: Annotated[int, Form(ge=1, le=MAX_K_LIMIT, description="matches per object")] = 10,
    category: Annotated[list[str] | None, Form(description="only these categories (repeatable)")] = None,
    brand: Annotated[list[str] | None, Form(description="only these brands (repeatable)")] = None,
    min_price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    max_price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    min_similarity: Annotated[float | None, Form(ge=-1, le=1, allow_inf_nan=False)] = None,
) -> SearchResponse:
    timer = StageTimer()
    if min_price is not None and max_price is not None and min_price > max_price:
        raise ApiError(422, "invalid_argument", "min_price must not be greater than max_price")
    query = SearchQuery(
        k=_check_k(state, k),
        detect=detect,
        box=parse_box(box) if box is not None else None,
        categories=tuple(c for c in category or () if c),
        brands=tuple(b for b in brand or () if b),
        min_price=min_price,
        max_price=max_price,
        min_similarity=min_similarity or 0.0,
    )
    image_url = image_url or None  # an HTML form sends an empty field for "not given"
    if (image is None) == (image_url is None):
        raise ApiError(422, "invalid_argument", "send exactly one of: an `image` file or an `image_url`")
    if image is not None:
        data = await read_upload(image, state.settings.max_upload_bytes)
    else:
        with timer.stage("fetch"):
            data = await state.fetcher.fetch(str(image_url))
    return await search_image(state.backends, state.settings, data, query, timer)


@router.get(
    "/v1/products/{product_id}/similar",
    response_model=SimilarResponse,
    responses=error_responses(404, 422, 502, 503),
    summary="More like this: catalog products that look like a catalog product",
)
async def similar(
    state: State,
    product_id: ProductId,
    k: Annotated[int, Query(ge=1, le=MAX_K_LIMIT)] = 10,
) -> SimilarResponse:
    request = indexer_pb2.SimilarRequest(product_id=product_id, k=_check_k(state, k))
    with StageTimer().stage("search"):
        result = await state.backends.indexer.similar(request)
    return SimilarResponse(product_id=product_id, matches=[MatchOut.from_proto(m) for m in result.matches])
