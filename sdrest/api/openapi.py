"""``GET /openapi.json``: an OpenAPI 3.1 document of every HTTP route the app serves.

The routes are enumerated from the app itself (every mount's sub-routes), so a new route is never
missing; each route declares its access rule, body, query parameters and success answer
(:mod:`sdrest.api.routing`), and the request and answer schemas are the msgspec types the
routes decode and encode, rendered by ``msgspec.json.schema_components``. The document is built
on the first request and kept on ``app.state`` (start-up pays nothing for it).
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

from sdrest import __version__
from sdrest.api.openai.responses import OpenAIError
from sdrest.api.rest.responses import RestError
from sdrest.api.routing import JSON, BodySpec, Multipart, NoBody, RouteSpec, spec_of, walk_routes
from sdrest.api.sdapi.responses import A1111Error, A1111ValidationError
from sdrest.api.sdcpp.responses import SdcppError

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



class Family(msgspec.Struct, frozen=True):
    """Who owns a path prefix: its tag in the document and the type of its error bodies."""

    prefix: str
    tag: str
    errors: tuple[type[msgspec.Struct], ...] = ()
    """The error body types of its 4XX answers (none for the server's own few routes)."""


FAMILIES: tuple[Family, ...] = (
    # The first match wins.
    Family("/sdcpp/v1/", "sdcpp", (SdcppError,)),
    Family("/v1/", "openai", (OpenAIError,)),
    # A1111's API exception shape, or FastAPI's 422 validation shape.
    Family("/sdapi/v1/", "a1111", (A1111Error, A1111ValidationError)),
    Family("/api/health", "server"),
    Family("/api/", "rest", (RestError,)),
    Family("/", "server"),
)
TAGS: tuple[dict[str, str], ...] = (
    {"name": "sdcpp", "description": "Native async jobs (stable-diffusion.cpp server API)."},
    {"name": "openai", "description": "OpenAI images API."},
    {"name": "a1111", "description": "AUTOMATIC1111 web UI API."},
    {"name": "rest", "description": "stable-diffusion.cpp-rest: auth, models, queue, utilities."},
    {"name": "server", "description": "Health, A1111 ping, this document, the UI redirect."},
)


class Operation(msgspec.Struct, frozen=True):
    """One HTTP operation the app serves, with the spec its route declares (None: a plain
    Starlette route, which the document refuses)."""

    method: str
    path: str
    spec: RouteSpec | None


def operations(app: Starlette) -> list[Operation]:
    """Every operation the app serves over HTTP, mounts expanded, HEAD left out.

    WebSocket routes and mounts without routes (the static UI) are not HTTP operations.
    """
    return [
        Operation(method, path, spec_of(item))
        for path, item in walk_routes(list(app.routes))
        for method in sorted((item.methods or set()) - {"HEAD"})
    ]


def http_routes(app: Starlette) -> list[tuple[str, str]]:
    """Every ``(METHOD, path)`` the app serves over HTTP."""
    return [(op.method, op.path) for op in operations(app)]


def _family(path: str) -> Family:
    """The family that owns ``path``."""
    for family in FAMILIES:
        if path.startswith(family.prefix) or path == family.prefix.rstrip("/"):
            return family
    return FAMILIES[-1]


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


Refs = dict[Any, dict[str, Any]]


def _request_body(spec: BodySpec, refs: Refs, components: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(spec, NoBody):
        return None
    if isinstance(spec, Multipart):
        schema = _multipart_schema(spec, components, refs[spec.fields]["$ref"])
        return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    return {"required": True, "content": {"application/json": {"schema": refs[spec]}}}


def _parameters(path: str, spec: RouteSpec) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    params.extend(
        {
            "name": q.name,
            "in": "query",
            "required": q.required,
            "description": q.description,
            "schema": copy.deepcopy(q.schema),
        }
        for q in spec.query
    )
    return params


def _responses(spec: RouteSpec, error: dict[str, Any] | None, refs: Refs) -> dict[str, Any]:
    status = str(spec.status)
    success: dict[str, Any] = {"description": "Success" if spec.status < 300 else "See the body"}
    if spec.status == 307:
        success["description"] = "Redirect to the web UI at /ui/"
    elif spec.status == 501:
        success["description"] = "Not implemented on this server (the body says why)"
    content: dict[str, Any] = {}
    for media_type in spec.media_types:
        if media_type == JSON:
            content[media_type] = {"schema": dict(refs[spec.answer])}
        elif media_type.startswith("text/"):  # an event stream, the metrics' text format
            content[media_type] = {"schema": {"type": "string"}}
        else:
            content[media_type] = {"schema": {"type": "string", "format": "binary"}}
    if content:
        success["content"] = content
    responses: dict[str, Any] = {status: success}
    if error is not None:
        responses["4XX"] = {
            "description": "Refused (bad input, unknown id, missing credentials, queue full...)",
            "content": {"application/json": {"schema": dict(error)}},
        }
    return responses


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^0-9A-Za-z]+", "_", path).strip("_") or "root"
    return f"{method.lower()}_{words}"


def _specs(app: Starlette) -> list[tuple[str, str, RouteSpec]]:
    """``(method, path, spec)`` of every operation; LookupError for a route that declares none
    (every route is made with :func:`sdrest.api.routing.route`, so the document is complete)."""
    ops = operations(app)
    missing = [(op.method, op.path) for op in ops if op.spec is None]
    if missing:
        raise LookupError(f"declare these routes with sdrest.api.routing.route: {missing}")
    return [(op.method, op.path, op.spec) for op in ops if op.spec is not None]


def _schema_refs(specs: list[RouteSpec]) -> tuple[Refs, dict[str, Any]]:
    """Every body, answer and error type as a schema (a $ref for Structs), and the components."""
    types: list[Any] = []
    bodies = [spec.body for spec in specs if spec.body is not None]
    answers = [spec.answer for spec in specs if spec.answer is not None]
    errors = [error for family in FAMILIES for error in family.errors]
    for item in [*_struct_types(bodies), *answers, *errors]:
        if item not in types:
            types.append(item)
    # Every reference, nested ones included, already points into components/schemas.
    ref_list, components = msgspec.json.schema_components(
        types, ref_template=_REF_PREFIX + "{name}"
    )
    return dict(zip(types, ref_list, strict=True)), dict(components)


def _error_schema(family: Family, refs: Refs) -> dict[str, Any] | None:
    schemas = [refs[error] for error in family.errors]
    if len(schemas) > 1:
        return {"anyOf": schemas}
    return schemas[0] if schemas else None


def build_openapi(app: Starlette) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every HTTP route ``app`` serves (``create_app``'s app),
    read from the routes' specs. Raises :class:`LookupError` for a route without one."""
    specs = _specs(app)
    refs, components = _schema_refs([spec for _, _, spec in specs])
    paths: dict[str, dict[str, Any]] = {}
    for method, path, spec in specs:
        family = _family(path)
        error = _error_schema(family, refs)
        operation: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "tags": [family.tag],
            "responses": _responses(spec, error, refs),
        }
        if spec.summary:
            operation["summary"] = spec.summary
        parameters = _parameters(path, spec)
        if parameters:
            operation["parameters"] = parameters
        if spec.body is not None:
            body = _request_body(spec.body, refs, components)
            if body is not None:
                operation["requestBody"] = body
        if spec.access == "public":
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
