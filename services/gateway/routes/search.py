"""Search routes: photo search and "more like this"."""

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from services.common.catalog import MAX_URL_CHARS
from services.common.gen.visualsearch.v1 import indexer_pb2
from services.common.images import FORMAT_NAMES
from services.gateway.auth.deps import SEARCH_KEY
from services.gateway.bodies import read_upload
from services.gateway.config import MAX_K_LIMIT
from services.gateway.deps import ProductId, State
from services.gateway.errors import ApiError, error_responses
from services.gateway.geometry import parse_box
from services.gateway.metrics import StageTimer
from services.gateway.pipeline import search_image
from services.gateway.schemas import MatchOut, SearchResponse, SimilarResponse
from services.gateway.search_form import SearchOptions, check_k

router = APIRouter(tags=["search"], dependencies=[SEARCH_KEY])


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    responses=error_responses(400, 413, 415, 422, 502, 503),
    summary="Find the products in a photo and the catalog products that look like each",
)
async def search(
    state: State,
    options: SearchOptions,
    image: Annotated[
        UploadFile | None, File(description=f"the photo: {FORMAT_NAMES} (recognised from its bytes)")
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
) -> SearchResponse:
    timer = StageTimer()
    query = replace(options, box=parse_box(box)) if box is not None else options
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
    request = indexer_pb2.SimilarRequest(product_id=product_id, k=check_k(k, state.settings.max_k))
    with StageTimer().stage("search"):
        result = await state.backends.indexer.similar(request)
    return SimilarResponse(product_id=product_id, matches=[MatchOut.from_proto(m) for m in result.matches])
