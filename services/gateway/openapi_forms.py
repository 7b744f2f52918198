"""The request bodies in the OpenAPI schema, made as exact as the routes that read them.

A client generated from the schema, or a fuzzer driven by it, should send only what the routes
accept. Two things FastAPI cannot say by itself are added once, after the schema is generated:

- A form has no null. FastAPI describes an optional form field as ``anyOf: [T, null]``, which
  invites ``name=null``; in a form, leaving the field out is the null.
- Some routes take exactly one of two fields (an uploaded file or a URL to fetch it from). The
  body says so with ``oneOf`` (or ``required`` where only one of them can be sent that way),
  and is required.
"""

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from services.gateway.bodies import FORM_TYPES

Schema = dict[str, Any]

# (path, method) -> the fields of which a request body holds exactly one.
ONE_OF: dict[tuple[str, str], tuple[str, str]] = {
    ("/v1/search", "post"): ("image", "image_url"),
    ("/v1/shop/frame", "post"): ("video", "video_url"),
    ("/v1/videos", "post"): ("video", "video_url"),
    ("/v1/imports", "post"): ("feed", "feed_url"),
}


def without_null(field: Schema) -> Schema:
    """``anyOf: [T, null]`` -> T, keeping the field's title and description; others unchanged."""
    options = field.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return field
    rest = [option for option in options if option != {"type": "null"}]
    kept = {key: value for key, value in field.items() if key != "anyOf"}
    if kept.get("default", 0) is None:
        del kept["default"]
    return {**rest[0], **kept} if len(rest) == 1 else {**kept, "anyOf": rest}


def exact_body(body: Schema, media_type: str, alternatives: tuple[str, ...]) -> None:
    """Rewrites one media type's body schema in place (see the module docstring)."""
    properties: dict[str, Schema] = body.get("properties", {})
    for name, field in properties.items():
        if media_type in FORM_TYPES or name in alternatives:
            properties[name] = without_null(field)
    present = [name for name in alternatives if name in properties]
    if len(present) == 1:
        body["required"] = sorted({*body.get("required", []), *present})
    elif present:
        body["oneOf"] = [{"required": [name]} for name in present]


def exact_request_bodies(schema: Schema) -> Schema:
    """A copy of ``schema`` with every request body made exact; component bodies are resolved."""
    schema = copy.deepcopy(schema)  # route-level openapi_extra dicts are shared module constants
    components: dict[str, Schema] = schema.get("components", {}).get("schemas", {})
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if not body:
                continue
            alternatives = ONE_OF.get((path, method), ())
            if alternatives:
                body["required"] = True
            for media_type, content in body.get("content", {}).items():
                target = content.get("schema", {})
                ref = target.get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    target = components[ref.rpartition("/")[2]]
                exact_body(target, media_type, alternatives)
    return schema


def document_forms(app: FastAPI, adjust: Callable[[Schema], None] = lambda schema: None) -> None:
    """Wraps ``app.openapi`` so the schema it serves has exact request bodies; ``adjust`` then
    fills in what depends on the settings (limits)."""
    generate = app.openapi

    def openapi() -> Schema:
        if app.openapi_schema is None:
            schema = exact_request_bodies(generate())
            adjust(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
