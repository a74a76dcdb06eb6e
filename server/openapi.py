"""``/openapi.json``, generated from the endpoint declarations and JSON Schemas."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from schemas import messages
from server.endpoint import Access, Endpoint

_ERROR_STATUSES = {
    "400": "Malformed request (bad JSON, bad parameter).",
    "401": "Missing, unknown, expired or revoked token.",
    "403": "The caller's role does not allow this.",
    "404": "Not found.",
    "413": "Body too large.",
    "415": "Body is not application/json.",
    "422": "Body does not match the schema.",
    "429": "Too many requests (per-token rate limit); wait Retry-After seconds.",
}
#: Answered by any route under /api/ (the rate limit, server/middleware.py).
_RATE_LIMITED = {429: "Too many requests (per-token rate limit); wait Retry-After seconds."}


def _error_response(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _component_name(schema_file: str) -> str:
    return messages.load(schema_file).get("title", schema_file)


def _rewrite_refs(node: Any) -> Any:
    """Point ``{"$ref": "user.json"}`` at ``#/components/schemas/User``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.endswith(".json"):
                out[key] = _ref(_component_name(value[: -len(".json")]))["$ref"]
            elif key in ("$schema", "$id"):
                continue
            else:
                out[key] = _rewrite_refs(value)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def raw_operation(
    operation_id: str,
    summary: str,
    access: Access,
    responses: dict[int, str],
    *,
    tags: tuple[str, ...] = (),
    content_type: str | None = None,
    headers: Iterable[dict[str, Any]] = (),
    body_type: str | None = None,
) -> dict[str, Any]:
    """Describe a plain (non-JSON) route, e.g. tus or a file download; its
    errors still have the one JSON error shape.  ``headers`` are OpenAPI
    header parameters (``{"name", "required", "schema", "description"}``);
    ``body_type`` names the media type of an optional raw request body."""
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": list(tags),
        "x-access": str(access),
        "responses": {},
    }
    parameters = [{"in": "header", **h} for h in headers]
    if parameters:
        operation["parameters"] = parameters
    if body_type:
        operation["requestBody"] = {"required": False, "content": {
            body_type: {"schema": {"type": "string", "format": "binary"}}}}
    if access is not Access.PUBLIC:
        operation["security"] = [{"bearer": []}]
    for status, text in {**responses, **_RATE_LIMITED}.items():
        response: dict[str, Any] = {"description": text}
        if status >= 400:
            response = _error_response(text)
        elif content_type and status < 300 and status != 204:
            response["content"] = {content_type: {"schema": {"type": "string",
                                                             "format": "binary"}}}
        operation["responses"][str(status)] = response
    return operation


def document(
    endpoints: Iterable[Endpoint],
    version: str,
    extra_paths: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        operation: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "tags": list(ep.tags),
            "x-access": str(ep.access),
            "responses": {},
        }
        if ep.description:
            operation["description"] = ep.description
        parameters: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", ep.path)
        ]
        parameters += [
            {"name": q.name, "in": "query", "required": False, "schema": dict(q.schema),
             **({"description": q.description} if q.description else {})}
            for q in ep.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if ep.access is not Access.PUBLIC:
            operation["security"] = [{"bearer": []}]
        if ep.request_schema:
            schema = _ref(_component_name(ep.request_schema))
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }
        ok: dict[str, Any] = {"description": "Success."}
        if ep.response_schema:
            ok["content"] = {
                "application/json": {"schema": _ref(_component_name(ep.response_schema))}
            }
        elif ep.status != 204:
            ok["content"] = {"application/json": {"schema": {"type": "object"}}}
        operation["responses"][str(ep.status)] = ok
        errors = {**_ERROR_STATUSES, **{str(k): v for k, v in ep.errors.items()}}
        for status, text in errors.items():
            operation["responses"][status] = _error_response(text)
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    for path, operations in (extra_paths or {}).items():
        for method, operation in operations.items():
            params = re.findall(r"{(\w+)}", path)
            if params:
                operation = {**operation, "parameters": [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ] + operation.get("parameters", [])}
            paths.setdefault(path, {})[method] = operation
    components = {_component_name(n): _rewrite_refs(messages.load(n)) for n in messages.names()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Phenosync API",
            "version": version,
            "description": "Citizen-science phenology: sync, photos, review, open data.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
