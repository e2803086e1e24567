"""The OpenAPI document says what the services really answer.

Every error is ``{"error": code, "detail": sentence}`` (``ErrorBody``), whatever its status: the
document says so for the 422 of a request that fails validation (FastAPI would otherwise document
its own shape, which cdrflow never sends), and adds to every operation the answers the shared
plumbing gives: 400 (a NUL in the path or query string, ``cdrkit.storable``) everywhere, 401/403
where a token is required (``cdrkit.auth``), 404 where the path names something. A route
declares its own other statuses with ``errors(409, …)``; one declared without a shape gets
``ErrorBody``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error answer of every service."""

    error: str = Field(description="a stable code: invalid_input, not_found, unauthorized, …")
    detail: str = Field(description="a sentence for a person")


DESCRIPTIONS = {
    400: "Invalid input (the detail says which and why)",
    401: "No token, or a token not accepted (with a WWW-Authenticate challenge)",
    403: "The token's role is below what this route needs",
    404: "No such resource",
    405: "Method not allowed (Allow lists those that are)",
    409: "Conflicts with the resource's state",
    410: "Gone: past its retention",
    413: "The body is over the configured maximum",
    415: "A content type this route does not take",
    416: "The Range cannot be satisfied",
    422: "A parameter or the body fails validation",
    429: "Too many requests of this kind; retry after a while",
    503: "A dependency is unavailable; retry later",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these error statuses, each with the ``ErrorBody`` shape."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


def media(description: str, *types: str, binary: bool = False) -> dict[str, Any]:
    """A ``responses=`` entry for a non-JSON answer (CSV, XML, audio, event stream)."""
    schema = {"type": "string", "format": "binary"} if binary else {"type": "string"}
    return {
        "description": description,
        # A JSON document is whatever JSON it is; every other type is text (or bytes).
        "content": {t: {"schema": {} if t.endswith("json") else schema} for t in types},
    }


def link(path: str, method: str = "get", **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation at ``path`` (``{"call_id": "$response.body#/call_id"}``),
    for clients and for the stateful phase of an API fuzzer."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}


class Answer(BaseModel):
    """Base of the answer models: a field a service adds passes through (and may be documented
    later); the models name what a client can rely on."""

    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    problems: list[str] | None = None


class Consuming(Readiness):
    consumers: list[str]


def _error_response(schema_ref: dict[str, str], status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": schema_ref}},
    }


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` by one that completes every operation's answers (see above)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorBody"] = ErrorBody.model_json_schema()
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        for item in doc.get("paths", {}).values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                needed = {400}
                if "422" in responses or operation.get("parameters") or "requestBody" in operation:
                    needed.add(422)
                if operation.get("security"):
                    needed |= {401, 403}
                if any(p.get("in") == "path" for p in operation.get("parameters", ())):
                    needed.add(404)  # a path naming nothing
                for status in needed:
                    if status == 422 or str(status) not in responses:
                        responses[str(status)] = _error_response(ref, status)
                for status, answer in responses.items():
                    # an error declared without a shape (``responses={400: {}}``) has ours
                    if status[0] in "45" and "content" not in answer:
                        answer["content"] = {"application/json": {"schema": ref}}
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
