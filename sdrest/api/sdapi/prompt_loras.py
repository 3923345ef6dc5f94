"""A1111 ``<lora:name:weight>`` prompt tags, only when ``--a1111-prompt-loras`` turns them on.

Off by default: the sd.cpp servers treat prompt tags as plain text, and structured ``lora``
entries are the portable way. When on, a tag resolves ONLY against the registry's LoRA names (no
paths, so a prompt can never point the library at an arbitrary file); an unknown name is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from sdrest.errors import InvalidRequestError, NotFoundError
from sdrest.schemas import LoraSpec

# <lora:name>, <lora:name:0.8>, and A1111's <lora:name:te_weight:unet_weight> (first weight used).
_TAG = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.IGNORECASE)
MAX_TAGS = 16


def extract_prompt_loras(prompt: str, lora_names: Collection[str]) -> tuple[str, list[LoraSpec]]:
    """(prompt without the tags, one LoraSpec per tag, in order)."""
    loras: list[LoraSpec] = []
    for match in _TAG.finditer(prompt):
        name, raw_weight = match[1].strip(), (match[2] or "").strip()
        if name not in lora_names:
            known = ", ".join(sorted(lora_names)) or "none"
            raise NotFoundError(
                f"prompt tag <lora:{name}>: unknown LoRA {name!r}; available: {known}",
                field="prompt",
            )
        try:
            weight = float(raw_weight) if raw_weight else 1.0
        except ValueError:
            raise InvalidRequestError(
                f"prompt tag <lora:{name}:{raw_weight}>: the weight must be a number",
                field="prompt",
            ) from None
        if not -100.0 <= weight <= 100.0:
            raise InvalidRequestError(
                f"prompt tag <lora:{name}>: weight {weight} is out of range", field="prompt"
            )
        if len(loras) == MAX_TAGS:  # stop at the first tag too many, however many follow
            raise InvalidRequestError(f"at most {MAX_TAGS} <lora:...> tags", field="prompt")
        loras.append(LoraSpec(path=name, multiplier=weight))
    if not loras:
        return prompt, loras
    return _TAG.sub("", prompt).strip(), loras
