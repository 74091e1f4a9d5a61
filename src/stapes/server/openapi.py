"""An OpenAPI 3 description of this daemon's API, made from the route table itself (so it never
lists a route that does not exist): every path and method, its path parameters, the query
parameters Incus clients send, JSON request bodies, and the Incus envelopes it answers with.
Served at /1.0/openapi.json (trusted clients), and what the API fuzz test reads."""

from __future__ import annotations

import re
from typing import Any

from stapes.server.endpoint import Endpoint

_PARAM = re.compile(r"{([^}]+)}")
_QUERY = ("project", "recursion", "all-projects", "filter", "target")
_ENVELOPE = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["sync", "async", "error"]},
        "status": {"type": "string"},
        "status_code": {"type": "integer"},
        "error": {"type": "string"},
        "error_code": {"type": "integer"},
        "operation": {"type": "string"},
        "metadata": {},
    },
}
_STATUSES = {
    "200": "Success (sync)",
    "202": "An operation was started (async)",
    "400": "Bad request",
    "403": "Not authorized",
    "404": "Not found",
    "409": "Conflict",
    "412": "ETag mismatch",
    "413": "Body too large",
}


def _operation(path: str, method: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in _QUERY
    ]
    name = re.sub(r"[^A-Za-z0-9]+", "_", path.strip("/")).strip("_")
    op: dict[str, Any] = {
        "operationId": f"{method}_{name}",
        "parameters": parameters,
        "responses": {
            code: {
                "description": text,
                "content": {"application/json": {"schema": _ENVELOPE}},
            }
            for code, text in _STATUSES.items()
        },
    }
    if method in ("post", "put", "patch"):
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return op


def describe(endpoints: list[Endpoint], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = "/1.0" + endpoint.path
        for method in endpoint.actions():
            paths.setdefault(path, {})[method.lower()] = _operation(path, method.lower())
    return {
        "openapi": "3.0.3",
        "info": {"title": "Stapes (Incus-compatible) REST API", "version": version},
        "paths": paths,
    }
