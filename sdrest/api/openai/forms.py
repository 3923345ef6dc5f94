"""Reading the multipart body of ``/v1/images/edits`` within bounds.

The whole body is read first through :func:`read_body` (413 past the limit, before it is all in
memory) and then parsed from memory: Starlette's form parser alone bounds the number of parts but
not the size of a file. Each image is bounded again by the server's ``--max-image-mb``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from sdrest.api.common import MAX_JSON_BODY, PayloadTooLargeError, read_body, validation_path
from sdrest.api.openai.edits import MAX_EDIT_IMAGES
from sdrest.api.openai.schemas import EditFields
from sdrest.errors import InvalidRequestError
from sdrest.images import b64_to_bytes
from sdrest.settings import Limits
from sdrest.units import format_bytes

MAX_UPLOAD = MAX_JSON_BODY
"""Largest multipart body accepted, the same bound as a JSON body with base64 images."""
_MAX_TEXT_FIELDS = 64
_IMAGE_KEYS = ("image", "image[]")


class EditUpload(msgspec.Struct, frozen=True):
    """What an edit request sent: its text fields, its images (in order) and its mask."""

    fields: EditFields
    images: list[bytes]
    mask: bytes | None


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _file_bytes(value: UploadFile | str, field: str, limits: Limits) -> bytes:
    limit = limits.max_image_bytes
    if isinstance(value, str):  # a client that sent base64 or a data URL as a text part
        try:
            data = b64_to_bytes(value)
        except ValueError as exc:
            raise InvalidRequestError(
                f"{field} must be an image file upload (or base64 image data)", field=field
            ) from exc
    else:
        if value.size is not None and value.size > limit:
            raise PayloadTooLargeError(f"{field} is larger than {format_bytes(limit)}")
        data = await value.read()
    if len(data) > limit:
        raise PayloadTooLargeError(f"{field} is larger than {format_bytes(limit)}")
    return data


def parse_fields(texts: dict[str, str]) -> EditFields:
    """The text parts as :class:`EditFields` (numbers and booleans parsed from their text)."""
    try:
        return msgspec.convert(texts, EditFields, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"invalid request: {exc}", field=validation_path(exc)) from exc


async def read_edit_upload(request: Request, limits: Limits) -> EditUpload:
    """Read and bound the multipart body; 400 for anything that is not a usable form."""
    content_type = request.headers.get("content-type", "").lower()
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequestError(
            "images/edits expects multipart/form-data with the image files"
            f" (got {content_type or 'no content type'})"
        )
    body = await read_body(request, MAX_UPLOAD)
    parser = Request(request.scope, _replay(body))
    try:
        form = await parser.form(max_files=MAX_EDIT_IMAGES + 1, max_fields=_MAX_TEXT_FIELDS)
    except HTTPException as exc:
        raise InvalidRequestError(f"malformed multipart body: {exc.detail}") from exc
    try:
        texts: dict[str, str] = {}
        images: list[bytes] = []
        mask: bytes | None = None
        for key, value in form.multi_items():
            if key in _IMAGE_KEYS:
                if len(images) >= MAX_EDIT_IMAGES:
                    raise InvalidRequestError(f"at most {MAX_EDIT_IMAGES} images", field="image")
                images.append(await _file_bytes(value, f"image[{len(images)}]", limits))
            elif key == "mask":
                if mask is not None:
                    raise InvalidRequestError("send at most one mask", field="mask")
                mask = await _file_bytes(value, "mask", limits)
            elif isinstance(value, str):
                texts[key] = value
            else:
                raise InvalidRequestError(f"unexpected file in field {key!r}", field=key)
    finally:
        await form.close()  # spooled files on disk go now
    return EditUpload(fields=parse_fields(texts), images=images, mask=mask)
