"""Catalog routes: create/replace (JSON or multipart), read, list, delete."""

import base64
import binascii
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from services.common.catalog import ProductMeta
from services.common.errors import InvalidInput
from services.common.gen.visualsearch.v1 import indexer_pb2
from services.gateway.auth.deps import CATALOG_KEY, SEARCH_KEY
from services.gateway.bodies import body_kind, read_json, read_upload
from services.gateway.config import MAX_IMAGES_LIMIT, GatewaySettings
from services.gateway.deps import ProductId, State
from services.gateway.errors import ApiError, error_responses
from services.gateway.limits import too_large
from services.gateway.products import Submission, put_product
from services.gateway.schemas import (
    DeletedOut,
    ProductJsonBody,
    ProductList,
    ProductOut,
    PutProductResponse,
)

router = APIRouter(tags=["products"])
Model = TypeVar("Model", bound=BaseModel)


def _form_schema() -> dict[str, Any]:
    """The multipart body: ProductMeta's fields as form fields, plus the image files."""
    properties = dict(ProductMeta.model_json_schema()["properties"])
    properties["price"] = {"type": "number", "minimum": 0, "title": "Price"}
    properties["attributes"] = {"type": "string", "title": "Attributes", "description": "a flat JSON object"}
    properties["image"] = {
        "type": "array",
        "items": {"type": "string", "contentMediaType": "application/octet-stream"},
        "maxItems": MAX_IMAGES_LIMIT,
        "description": "image files (repeat the field for several)",
    }
    return {"title": "ProductForm", "type": "object", "properties": properties, "additionalProperties": False}


PUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ProductJsonBody.model_json_schema()},
            "multipart/form-data": {"schema": _form_schema()},
        },
    }
}


def document_image_limit(schema: dict[str, Any], limit: int) -> None:
    """The configured cap (VS_GATEWAY_MAX_IMAGES_PER_PRODUCT) on every image list of the PUT body,
    where the static schema above could only give the hard one."""
    content = schema["paths"]["/v1/products/{product_id}"]["put"]["requestBody"]["content"]
    for media in content.values():
        for field in media["schema"].get("properties", {}).values():
            if field.get("type") == "array" and "maxItems" in field:
                field["maxItems"] = limit


def _validate(model: type[Model], raw: Any) -> Model:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for error in errors:
            error["loc"] = ("body", *error["loc"])
        raise RequestValidationError(errors) from None


def _base64_image(text: str, number: int, max_bytes: int) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    text = "".join(text.split())
    if len(text) > (max_bytes + 2) // 3 * 4:
        raise ApiError(413, "too_large", f"image {number} is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"image {number} is not valid base64") from None
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes, f"image {number}")
    return data


async def _json_submission(request: Request, settings: GatewaySettings) -> Submission:
    body = _validate(ProductJsonBody, await read_json(request))
    encoded = ([body.image] if body.image else []) + body.images
    if len(encoded) > settings.max_images_per_product:
        raise InvalidInput(
            f"at most {settings.max_images_per_product} images per product; got {len(encoded)}"
        )
    images = [_base64_image(t, n, settings.max_upload_bytes) for n, t in enumerate(encoded, start=1)]
    meta = ProductMeta.model_validate(body.model_dump(exclude={"image", "images"}))
    return Submission(meta, images)


async def _form_submission(request: Request, settings: GatewaySettings) -> Submission:
    fields: dict[str, Any] = {}
    images: list[bytes] = []
    async with request.form(max_files=MAX_IMAGES_LIMIT, max_fields=100) as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "image":
                    raise InvalidInput(f"unexpected file field {key!r}; upload images as `image`")
                if value.filename or value.size:  # browsers send an empty part for an empty file input
                    images.append(await read_upload(value, settings.max_upload_bytes))
            elif key == "image_urls":
                fields.setdefault(key, []).append(value)
            elif key == "image":
                raise InvalidInput("`image` must be a file upload")
            elif key in fields:
                raise InvalidInput(f"form field {key!r} is given more than once")
            else:
                fields[key] = value
    if len(images) > settings.max_images_per_product:
        raise InvalidInput(f"at most {settings.max_images_per_product} images per product; got {len(images)}")
    return Submission(_validate(ProductMeta, fields), images)


@router.put(
    "/v1/products/{product_id}",
    response_model=PutProductResponse,
    responses=error_responses(400, 409, 413, 415, 422, 502, 503),
    openapi_extra=PUT_BODY,
    summary="Create or replace a product; it is searchable when this returns",
    dependencies=[CATALOG_KEY],
)
async def put(state: State, product_id: ProductId, request: Request) -> PutProductResponse:
    kind = body_kind(request)
    if kind == "json":
        submission = await _json_submission(request, state.settings)
    elif kind == "form":
        submission = await _form_submission(request, state.settings)
    else:
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    return await put_product(state, product_id, submission)


@router.get(
    "/v1/products/{product_id}",
    response_model=ProductOut,
    responses=error_responses(404, 422, 503),
    dependencies=[SEARCH_KEY],
)
async def get(state: State, product_id: ProductId) -> ProductOut:
    return ProductOut.from_proto(await state.backends.indexer.get(product_id))


@router.delete(
    "/v1/products/{product_id}",
    response_model=DeletedOut,
    responses=error_responses(404, 422, 503),
    dependencies=[CATALOG_KEY],
)
async def delete(state: State, product_id: ProductId) -> DeletedOut:
    removed = await state.backends.indexer.delete(product_id)
    return DeletedOut(product_id=product_id, vectors_removed=removed)


@router.get(
    "/v1/products",
    response_model=ProductList,
    responses=error_responses(422, 503),
    dependencies=[SEARCH_KEY],
)
async def list_products(
    state: State,
    category: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str, Query(max_length=1000, description="next_cursor of the previous page")] = "",
) -> ProductList:
    request = indexer_pb2.ListRequest(category=category, limit=limit, cursor=cursor)
    reply = await state.backends.indexer.list(request)
    return ProductList(
        products=[ProductOut.from_proto(p) for p in reply.products], next_cursor=reply.next_cursor or None
    )
