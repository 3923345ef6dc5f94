"""Sizes in messages, in the unit that reads best (a 2 KiB limit is not "0 MiB")."""

from __future__ import annotations

_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def format_bytes(count: int) -> str:
    """``count`` bytes in the largest binary unit it reaches, to two decimals at most:
    ``512 bytes``, ``1.5 KiB``, ``64 MiB``."""
    for size, unit in _UNITS:
        if count >= size:
            return f"{count / size:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return "1 byte" if count == 1 else f"{count} bytes"
