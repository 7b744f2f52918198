"""The API-key errors in the OpenAPI schema, on every operation that takes a key.

FastAPI declares the security schemes itself (from the dependency); the 401, 403, 429 and 503
the check can answer are added here once, after the schema is generated, rather than listed by
hand on each route where they would drift from the routes that really take a key.
"""

from typing import Any

from fastapi import FastAPI

from services.gateway.errors import ERROR_DESCRIPTIONS
from services.gateway.schemas import ErrorBody

AUTH_STATUSES = (401, 403, 429, 503)
_ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}


def document_operation(operation: dict[str, Any], enabled: bool) -> None:
    responses = operation.setdefault("responses", {})
    for status in AUTH_STATUSES:
        responses.setdefault(
            str(status),
            {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": _ERROR_BODY_REF}},
            },
        )
    if not enabled:
        operation["security"].append({})  # OpenAPI's "no key is also fine" (VS_GATEWAY_AUTH_ENABLED off)


def document_auth(app: FastAPI, enabled: bool) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
                "ErrorBody", ErrorBody.model_json_schema()
            )
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict) and "security" in operation:
                        document_operation(operation, enabled)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
