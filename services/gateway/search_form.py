"""The search options shared by every route that searches an image (photo, video frame)."""

from typing import Annotated

from fastapi import Depends, Form

from services.gateway.config import MAX_K_LIMIT
from services.gateway.deps import State
from services.gateway.errors import ApiError
from services.gateway.pipeline import SearchQuery


def check_k(k: int, max_k: int) -> int:
    if k > max_k:
        raise ApiError(422, "invalid_argument", f"k must be at most {max_k}; got {k}")
    return k


def search_options(
    state: State,
    detect: Annotated[bool, Form(description="false searches the whole image")] = True,
    k: Annotated[int, Form(ge=1, le=MAX_K_LIMIT, description="matches per object")] = 10,
    category: Annotated[list[str] | None, Form(description="only these categories (repeatable)")] = None,
    brand: Annotated[list[str] | None, Form(description="only these brands (repeatable)")] = None,
    min_price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    max_price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    min_similarity: Annotated[float | None, Form(ge=-1, le=1, allow_inf_nan=False)] = None,
) -> SearchQuery:
    """Form fields -> a validated SearchQuery (FastAPI merges them into the route's form schema)."""
    if min_price is not None and max_price is not None and min_price > max_price:
        raise ApiError(422, "invalid_argument", "min_price must not be greater than max_price")
    return SearchQuery(
        k=check_k(k, state.settings.max_k),
        detect=detect,
        categories=tuple(c for c in category or () if c),
        brands=tuple(b for b in brand or () if b),
        min_price=min_price,
        max_price=max_price,
        min_similarity=min_similarity or 0.0,
    )


SearchOptions = Annotated[SearchQuery, Depends(search_options)]
