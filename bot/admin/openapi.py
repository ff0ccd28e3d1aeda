"""The OpenAPI 3.1 document, built from the declared endpoints (never written by hand)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bot.admin.api import Endpoint

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "the body is not valid JSON",
    "401": "no valid bearer token",
    "403": "the token's role may not call this endpoint",
    "404": "not found",
    "409": "conflicts with the current state (the code says how)",
    "415": "the body is not application/json",
    "422": "the request failed validation (details list each field)",
    "502": "the WeCom platform refused the change or did not answer",
}


def build_document(endpoints: list[Endpoint], version: str) -> dict[str, Any]:
    """The document for ``endpoints``: each is guarded and lists its roles as ``x-roles``."""
    schemas: dict[str, Any] = {"Error": _error_schema()}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scrm-bot admin API",
            "version": version,
            "description": "Bearer tokens from [admin] tokens; roles admin, manager, staff, "
            "integration. Every state change is written to the audit log with the actor.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(endpoint: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "security": [{"bearer": []}],
        "x-roles": sorted(endpoint.roles),
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in endpoint.path_params
        ],
    }
    if endpoint.query is not None:
        operation["parameters"] += _query_parameters(endpoint.query)
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(endpoint.body, schemas)}},
        }
    answer: dict[str, Any] = {"description": "success"}
    if endpoint.response is not None:
        answer["content"] = {"application/json": {"schema": _schema(endpoint.response, schemas)}}
    codes = {"401", "403", "422"} | set(endpoint.errors)
    if endpoint.body is not None:
        codes |= {"400", "415"}
    if endpoint.path_params:
        codes.add("404")
    error = {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}
    operation["responses"] = {str(endpoint.status): answer} | {
        code: {"description": _ERRORS[code], "content": error} for code in sorted(codes)
    }
    return operation


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF, mode="serialization")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "stable machine-readable code"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
    }
