"""Walking the models folder and judging user-supplied paths (pure functions, no registry state)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sdrest.errors import PathNotAllowedError

MODEL_SUFFIXES = frozenset({".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin"})
MAX_DEPTH = 8


def walk(root: Path, warnings: list[str]) -> Iterator[Path]:
    """Model files under ``root``: hidden names skipped, directory symlinks followed once."""
    seen: set[str] = set()
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue  # a symlink loop or a folder linked twice
        seen.add(real)
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            warnings.append(f"cannot list {folder}: {exc.strerror or exc}")
            continue
        for child in children:
            if child.name.startswith("."):
                continue  # partial downloads, editor files, .git
            path = Path(child.path)
            try:
                is_dir = child.is_dir()  # follows symlinks; loops are cut by ``seen``
            except OSError:
                continue
            if is_dir:
                if depth + 1 < MAX_DEPTH:
                    stack.append((path, depth + 1))
            elif Path(child.name).suffix.lower() in MODEL_SUFFIXES:
                yield path


def contains(folder: Path, candidate: Path) -> bool:
    """Whether ``candidate`` is ``folder`` or lies inside it (both resolved by the caller)."""
    return candidate == folder or candidate.is_relative_to(folder)


def is_file(path: Path) -> bool:
    """``path.is_file()`` for a user-supplied path: a name the OS refuses (longer than its limit,
    ENAMETOOLONG) names no file, rather than raising."""
    try:
        return path.is_file()
    except OSError:
        return False


def check_relative(relpath: str, what: str) -> None:
    """Refuse (400) a user-supplied path that is not a plain relative path inside ``what``."""
    path = Path(relpath)
    if (
        not relpath
        or "\x00" in relpath
        or path.is_absolute()
        or relpath.startswith(("/", "\\"))
        or (len(relpath) > 1 and relpath[1] == ":")  # a Windows drive
        or ".." in path.parts
        or ".." in relpath.replace("\\", "/").split("/")
    ):
        raise PathNotAllowedError(f"{relpath!r} must be a plain path inside the {what} folder")
