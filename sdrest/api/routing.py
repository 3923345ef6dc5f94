"""Routes that carry their own contract: who may call them, what they read, what they answer.

Each family's ``routes.py`` is its complete route index, written with :func:`route`::

    route("/img_gen", img_gen, "POST", access="generate", body=ImgGenRequest,
          answer=JobCreated, status=202)

The spec travels on the Starlette route (:class:`SpecRoute`), so the OpenAPI builder and the
auth-matrix test read it from the app itself, and the access rule is enforced by the route (the
handler never starts with a permission check). Handlers that need the caller read
:func:`~sdrest.auth.principal.principal_of`; finer rules (whose job is this?) stay in them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from sdrest.auth.principal import Permission, require, require_identified

Access = Permission | Literal["public", "identified"]
"""A permission the caller must hold; ``identified``: anyone but an anonymous or refused
caller (guests included); ``public``: no credentials asked, whatever the auth mode."""

Endpoint = Callable[[Request], Awaitable[Response]]


class Multipart(msgspec.Struct, frozen=True, kw_only=True):
    """A ``multipart/form-data`` body: file parts plus the text fields of ``fields``."""

    fields: type[msgspec.Struct]
    """The Struct the text parts are converted to (numbers and booleans parsed from text)."""
    files: tuple[str, ...]
    """Parts carrying one file each."""
    file_lists: tuple[str, ...] = ()
    """Parts that may repeat, one file each (``image[]``)."""
    description: str = ""


class NoBody(msgspec.Struct, frozen=True):
    """The route reads no body (anything sent is ignored)."""


NO_BODY: Final = NoBody()

BodySpec = type[msgspec.Struct] | Multipart | NoBody


class Query(msgspec.Struct, frozen=True):
    """One query parameter a route reads, with its JSON Schema."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


JSON = "application/json"
IMAGE_TYPES: Final = ("image/png", "image/jpeg", "image/webp")


class RouteSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a route promises: access rule, body, query parameters and its success answer."""

    access: Access
    body: BodySpec | None
    """What a POST decodes (``NO_BODY`` when nothing); None for GET."""
    query: tuple[Query, ...] = ()
    answer: Any = None
    """The type of a JSON success body (a Struct, ``list[Struct]``, ...), for the schema."""
    status: int = 200
    media_types: tuple[str, ...] = (JSON,)
    summary: str = ""


class SpecRoute(Route):
    """A Starlette route that carries its :class:`RouteSpec`."""

    spec: RouteSpec


def _guarded(endpoint: Endpoint, access: Access) -> Endpoint:
    if access == "public":
        return endpoint

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if access == "identified":
            require_identified(request)
        else:
            require(request, access)
        return await endpoint(request)

    return guarded


def route(
    path: str,
    endpoint: Endpoint,
    method: str = "GET",
    *,
    access: Access,
    body: BodySpec | None = None,
    query: tuple[Query, ...] = (),
    answer: Any = None,
    status: int = 200,
    media_types: tuple[str, ...] = (JSON,),
) -> SpecRoute:
    """A route whose access rule is enforced before ``endpoint`` runs, and whose contract
    (body, query, answer) the OpenAPI document reads. A POST must say what it reads
    (``NO_BODY`` for nothing); a JSON success must name its ``answer`` type."""
    if method == "POST" and body is None:
        raise ValueError(f"POST {path}: say what the route reads (body=..., or NO_BODY)")
    if JSON in media_types and answer is None and 200 <= status < 300:
        raise ValueError(f"{method} {path}: a JSON success needs its answer type")
    spec = RouteSpec(
        access=access,
        body=body,
        query=query,
        answer=answer,
        status=status,
        media_types=media_types,
        summary=(endpoint.__doc__ or "").strip().split("\n\n")[0],
    )
    result = SpecRoute(path, _guarded(endpoint, access), methods=[method])
    result.spec = spec
    return result


def walk_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """Every HTTP route under ``routes`` with its full path, mounts expanded (THE route walker:
    the OpenAPI builder and the tests enumerate the app with it)."""
    for item in routes:
        if isinstance(item, Mount):
            yield from walk_routes(list(item.routes), prefix + item.path)
        elif isinstance(item, Route) and item.methods:
            yield prefix + item.path, item


def spec_of(item: Route) -> RouteSpec | None:
    """The spec a route carries (None for plain Starlette routes)."""
    return item.spec if isinstance(item, SpecRoute) else None
