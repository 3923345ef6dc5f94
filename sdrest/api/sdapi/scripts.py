"""A1111 scripts, extensions and inpainting options onto the canonical request (pure).

One script runs here: img2img's "SD upscale" (``tiled_upscale`` of the canonical request, one job
of several engine calls). Any other ``script_name``, any ``alwayson_scripts`` entry with arguments
(ControlNet units, ADetailer...) and ``restore_faces: true`` are refused with A1111's 422: an
answer that silently left them out would be a different image than the client asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdrest.api.sdapi.errors import RefusedFeatureError, ValidationFailed
from sdrest.api.sdapi.responses import ScriptArg, ScriptInfo
from sdrest.api.sdapi.schemas import Img2ImgBody, Txt2ImgBody
from sdrest.errors import InvalidRequestError
from sdrest.schemas import InpaintLayer, RequestLayer, TiledUpscaleLayer

SD_UPSCALE = "sd upscale"
"""The script's name as ``/scripts`` lists it (A1111 matches names case-insensitively)."""
SD_UPSCALE_DEFAULTS: tuple[Any, ...] = ("", 64, "None", 2.0)
"""A1111's defaults of ``[info, overlap, upscaler, scale factor]``."""
BUILTIN_UPSCALERS = {"none": "none", "lanczos": "lanczos", "nearest": "nearest"}
_FILL = {0: "fill", 1: "original"}


def check_refusals(body: Txt2ImgBody) -> None:
    """``restore_faces`` and ``alwayson_scripts`` that would run: a 422 saying why (an entry
    without arguments runs nothing anywhere, so it passes)."""
    if body.restore_faces:
        raise RefusedFeatureError(
            "restore_faces: there is no face restorer here (GFPGAN and CodeFormer are not part"
            " of stable-diffusion.cpp); send restore_faces: false",
            field="restore_faces",
        )
    for name, entry in (body.alwayson_scripts or {}).items():
        if not isinstance(entry, dict) or not entry.get("args"):
            continue  # no arguments, nothing to run (webuiapi's "ControlNet": {"args": []})
        raise RefusedFeatureError(
            f"always on script {name} not found: this server runs no A1111 extensions"
            " (ControlNet, ADetailer...); leave alwayson_scripts empty",
            field=f"alwayson_scripts.{name}",
        )


def script_fields(body: Txt2ImgBody, upscalers: Sequence[str]) -> RequestLayer:
    """The canonical fields of ``script_name`` (SD upscale in img2img), after the refusals."""
    check_refusals(body)
    name = (body.script_name or "").strip()
    if not name or name.lower() == "none":
        return {}
    if not isinstance(body, Img2ImgBody) or name.lower() != SD_UPSCALE:
        raise RefusedFeatureError(f"Script '{name}' not found", field="script_name")
    args = list(body.script_args or [])
    args += SD_UPSCALE_DEFAULTS[len(args) :]
    overlap, upscaler, scale = args[1], args[2], args[3]
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= 1024:
        raise _arg_error(1, "overlap must be an integer from 0 to 1024")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 8:
        raise _arg_error(3, "scale factor must be a number above 0, at most 8")
    tiled: TiledUpscaleLayer = {"enabled": True, "overlap": overlap, "scale": float(scale)}
    label = _upscaler_name(upscaler, upscalers)
    native = BUILTIN_UPSCALERS.get(label.lower())
    if native is None:
        tiled["upscaler"], tiled["upscaler_model"] = "model", label
    else:
        tiled["upscaler"] = native
    return {"tiled_upscale": tiled, "batch_count": body.n_iter or 1}


def _arg_error(index: int, message: str) -> ValidationFailed:
    return ValidationFailed(message, loc=["body", "script_args", index], kind="value_error")


def _upscaler_name(value: Any, upscalers: Sequence[str]) -> str:
    """An upscaler given as an index into ``/upscalers`` (as A1111's script takes it) or by
    name; a name must be one ``/upscalers`` lists."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(upscalers):
            raise _arg_error(2, f"upscaler index {value} is outside 0..{len(upscalers) - 1}")
        return upscalers[value]
    if isinstance(value, str):
        for name in upscalers:
            if name.lower() == value.strip().lower():
                return name
    raise InvalidRequestError(
        f"SD upscale: unknown upscaler {value!r}; valid: {', '.join(upscalers)}",
        field="script_args[2]",
    )


def inpaint_fields(body: Img2ImgBody) -> InpaintLayer:
    """A1111's inpainting options for a request with a mask: the original is always pasted
    back, as A1111 does; full resolution and the fill follow A1111's API defaults (on, 0)."""
    fill = 0 if body.inpainting_fill is None else body.inpainting_fill
    if fill not in _FILL:
        raise InvalidRequestError(
            f"inpainting_fill {fill} ({'latent noise' if fill == 2 else 'latent nothing'})"
            " replaces the masked latent, which stable-diffusion.cpp does not let a caller"
            " set; use 0 (fill) or 1 (original)",
            field="inpainting_fill",
        )
    full_res = True if body.inpaint_full_res is None else bool(body.inpaint_full_res)
    padding = body.inpaint_full_res_padding or 0
    return {
        "mask_blur": 4 if body.mask_blur is None else body.mask_blur,
        "paste_back": True,
        "fill": _FILL[fill],
        "full_res": full_res,
        "full_res_padding": padding,
    }


def scripts_info(upscalers: Sequence[str]) -> list[ScriptInfo]:
    """``GET /script-info``: SD upscale and its arguments, as A1111 describes a script."""
    args = [
        ScriptArg("Info", "", None, None, None, None),
        ScriptArg("Tile overlap", 64, 0, 256, 16, None),
        ScriptArg("Upscaler", "None", None, None, None, list(upscalers)),
        ScriptArg("Scale Factor", 2.0, 1.0, 4.0, 0.05, None),
    ]
    return [ScriptInfo(SD_UPSCALE, False, True, args)]
