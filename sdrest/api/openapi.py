"""``GET /openapi.json``: an OpenAPI 3.1 document of every HTTP route the app serves.

The routes are enumerated from the app itself (every mount's sub-routes), so a new route is never
missing; what a route cannot tell (its body, query parameters, whether it is public) comes from
the tables in :mod:`sdrest.api.openapi_tables`. Request schemas are the msgspec Structs the
routes decode, rendered by ``msgspec.json.schema_components``. The document is built on the first
request and kept on ``app.state`` (start-up pays nothing for it).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from sdrest import __version__
from sdrest.api.openapi_tables import (
    ERROR_SCHEMAS,
    FAMILIES,
    PUBLIC_ROUTES,
    QUERY_PARAMETERS,
    REQUEST_BODIES,
    SUCCESS,
    TAGS,
    BodySpec,
    Multipart,
    NoBody,
)

logger = logging.getLogger(__name__)

OPENAPI_PATH = "/openapi.json"
_REF_PREFIX = "#/components/schemas/"
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
_SECURITY_SCHEMES = ("bearer", "basic", "apiKey")
"""Any one of them identifies the caller (the order is the order the server checks them)."""
_DESCRIPTION = """\
stable-diffusion.cpp behind several HTTP API families over one job system: `/sdcpp/v1`
(native async jobs), `/v1` (OpenAI images), `/sdapi/v1` (AUTOMATIC1111) and `/api`
(stable-diffusion.cpp-rest).

Not described as operations: the WebSocket `/ws` (a snapshot on connect, then `job_update`,
`queue_update` and `system_update` messages; `?token=` authenticates it) and the static web UI
under `/ui/`.

Credentials (when the server runs with authentication): `Authorization: Bearer <login token or
API key>`, `X-API-Key: <key>` or HTTP Basic. Operations marked with an empty security list are
public."""


def http_routes(app: Starlette) -> list[tuple[str, str]]:
    """Every ``(METHOD, path)`` the app serves over HTTP, mounts expanded, HEAD left out.

    WebSocket routes and mounts without routes (the static UI) are not HTTP operations.
    """
    found: list[tuple[str, str]] = []

    def walk(routes: list[BaseRoute], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(list(route.routes), prefix + route.path)
            elif isinstance(route, Route) and route.methods:
                found.extend((m, prefix + route.path) for m in sorted(route.methods - {"HEAD"}))

    walk(list(app.routes), "")
    return found


def _family(path: str) -> tuple[str, str]:
    """``(tag, error schema name)`` of the family that owns ``path``."""
    for prefix, tag, error in FAMILIES:
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            return tag, error
    return "server", ""


def _struct_types(bodies: list[BodySpec]) -> list[type[msgspec.Struct]]:
    types: list[type[msgspec.Struct]] = []
    for body in bodies:
        struct = body.fields if isinstance(body, Multipart) else body
        if isinstance(struct, type) and struct not in types:
            types.append(struct)
    return types


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A form part is text or a file, never null: ``X | None`` becomes ``X`` (left out = None)."""
    options = [o for o in schema.get("anyOf", ()) if o != {"type": "null"}]
    if "anyOf" in schema and len(options) == 1:
        schema = {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _multipart_schema(spec: Multipart, components: dict[str, Any], ref: str) -> dict[str, Any]:
    """The form as one object: the Struct's fields inline (its schema forbids unknown fields,
    so it cannot be combined with the file parts through ``allOf``) plus the file parts."""
    fields = copy.deepcopy(components[ref.removeprefix(_REF_PREFIX)])
    properties = {k: _not_null(v) for k, v in fields.get("properties", {}).items()}
    binary = {"type": "string", "format": "binary"}
    for name in spec.files:
        properties[name] = dict(binary)
    for name in spec.file_lists:
        properties[name] = {"type": "array", "items": dict(binary)}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if fields.get("required"):
        schema["required"] = list(fields["required"])
    if spec.description:
        schema["description"] = spec.description
    return schema


Refs = dict[type[msgspec.Struct], dict[str, Any]]


def _request_body(spec: BodySpec, refs: Refs, components: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(spec, NoBody):
        return None
    if isinstance(spec, Multipart):
        schema = _multipart_schema(spec, components, refs[spec.fields]["$ref"])
        return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    return {"required": True, "content": {"application/json": {"schema": refs[spec]}}}


def _parameters(method: str, path: str) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    params.extend(copy.deepcopy(list(QUERY_PARAMETERS.get((method, path), ()))))
    return params


def _responses(method: str, path: str, error: str) -> dict[str, Any]:
    status, media_types = SUCCESS.get((method, path), ("200", ("application/json",)))
    success: dict[str, Any] = {"description": "Success" if int(status) < 300 else "See the body"}
    if status == "307":
        success["description"] = "Redirect to the web UI at /ui/"
    elif status == "501":
        success["description"] = "Not implemented on this server (the body says why)"
    content: dict[str, Any] = {}
    for media_type in media_types:
        if media_type == "application/json":
            content[media_type] = {"schema": {}}
        elif media_type == "text/event-stream":
            content[media_type] = {"schema": {"type": "string"}}
        else:
            content[media_type] = {"schema": {"type": "string", "format": "binary"}}
    if content:
        success["content"] = content
    responses: dict[str, Any] = {status: success}
    if error:
        responses["4XX"] = {
            "description": "Refused (bad input, unknown id, missing credentials, queue full...)",
            "content": {"application/json": {"schema": {"$ref": _REF_PREFIX + error}}},
        }
    return responses


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^0-9A-Za-z]+", "_", path).strip("_") or "root"
    return f"{method.lower()}_{words}"


def build_openapi(app: Starlette) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every HTTP route ``app`` serves (``create_app``'s app).

    Raises :class:`LookupError` when a POST route has no entry in ``REQUEST_BODIES``: the table
    must say what every POST route decodes (or that it reads no body).
    """
    routes = http_routes(app)
    missing = [r for r in routes if r[0] == "POST" and r not in REQUEST_BODIES]
    if missing:
        raise LookupError(f"no request body entry for {missing} in openapi_tables.REQUEST_BODIES")
    structs = _struct_types(list(REQUEST_BODIES.values()))
    # Every reference, nested ones included, already points into components/schemas.
    ref_list, defs = msgspec.json.schema_components(structs, ref_template=_REF_PREFIX + "{name}")
    refs: Refs = dict(zip(structs, ref_list, strict=True))
    components: dict[str, Any] = dict(defs)
    components.update(copy.deepcopy(dict(ERROR_SCHEMAS)))
    paths: dict[str, dict[str, Any]] = {}
    for method, path in routes:
        tag, error = _family(path)
        operation: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "tags": [tag],
            "responses": _responses(method, path, error),
        }
        parameters = _parameters(method, path)
        if parameters:
            operation["parameters"] = parameters
        spec = REQUEST_BODIES.get((method, path))
        if spec is not None:
            body = _request_body(spec, refs, components)
            if body is not None:
                operation["requestBody"] = body
        if (method, path) in PUBLIC_ROUTES:
            operation["security"] = []
        paths.setdefault(_PARAM.sub(r"{\1}", path), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "sdrest", "version": __version__, "description": _DESCRIPTION},
        "tags": [dict(tag) for tag in TAGS],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A login token (JWT from /api/auth/login) or an API key.",
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user:password (the password may also be an API key).",
                },
            },
        },
        "security": [{name: []} for name in _SECURITY_SCHEMES],
    }


async def openapi_endpoint(request: Request) -> Response:
    """``GET /openapi.json`` (public): the document, built on first use and kept on the app."""
    app: Starlette = request.app
    document: bytes | None = getattr(app.state, "openapi_document", None)
    if document is None:
        document = msgspec.json.encode(build_openapi(app))
        app.state.openapi_document = document
        logger.debug("built the OpenAPI document (%d bytes)", len(document))
    return Response(document, media_type="application/json")
