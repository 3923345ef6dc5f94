"""The stable-diffusion.cpp-rest readme's text folders of the models folder: ``presets/``
(generation presets, ``.json``/``.yaml``), ``prompts/`` and ``neg_prompts/`` (prompt templates,
``.txt``/``.json``). They are listed in ``/api/models`` as their types (``presets``, ``prompts``,
``neg_prompts``) and ``GET /api/models/{name}?type=prompts`` serves a file's text, so a UI can
offer them. Pure reads of the folder, bounded (file count and size); nothing outside the folder
(a symlink leading out) is listed or read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, NamedTuple

from sdrest.errors import ModelNotFoundError

TEMPLATE_FOLDERS: Final[dict[str, tuple[str, ...]]] = {
    "presets": (".json", ".yaml", ".yml"),
    "prompts": (".txt", ".json"),
    "neg_prompts": (".txt", ".json"),
}
"""Folder (= the type it lists as) -> the extensions the spec gives it."""
MAX_TEMPLATE_BYTES: Final = 256 * 1024
"""Larger files are listed with an error and never read."""
MAX_TEMPLATES: Final = 1000
"""Files listed per folder at most."""


class Template(NamedTuple):
    """One template file: ``type`` is its folder, ``relpath`` relative to the models folder."""

    name: str
    type: str
    relpath: str
    path: Path
    size: int
    modified: float


def scan_templates(models_dir: Path, kind: str | None = None) -> list[Template]:
    """The template files of the models folder (of one ``kind`` when given), by folder and name.
    Blocking (a folder listing): call it off the event loop."""
    root = models_dir.resolve()
    found: list[Template] = []
    for folder, suffixes in TEMPLATE_FOLDERS.items():
        if kind is not None and kind != folder:
            continue
        base = models_dir / folder
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)[:MAX_TEMPLATES]
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if path.suffix.lower() not in suffixes or not entry.is_file():
                continue
            real = path.resolve()
            if not real.is_relative_to(root):  # a link leading out of the models folder
                continue
            stat = real.stat()
            relpath = f"{folder}/{entry.name}"
            found.append(Template(path.stem, folder, relpath, real, stat.st_size, stat.st_mtime))
    return found


def find_template(models_dir: Path, name: str, kind: str | None = None) -> Template:
    """A template by name, file name or relative path (404 when there is none)."""
    for template in scan_templates(models_dir, kind):
        if name in (template.name, template.relpath, Path(template.relpath).name):
            return template
    raise ModelNotFoundError(f"no template named {name!r}", field="model_id")


def read_template(template: Template) -> str | None:
    """The file's text (UTF-8; undecodable bytes replaced); None past
    :data:`MAX_TEMPLATE_BYTES` (its view says so). Blocking."""
    if template.size > MAX_TEMPLATE_BYTES:
        return None
    with template.path.open("rb") as handle:  # never more than the bound, whatever it became
        return handle.read(MAX_TEMPLATE_BYTES).decode("utf-8", errors="replace")
