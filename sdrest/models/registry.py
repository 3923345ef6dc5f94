"""The model registry: scan the models folder, type and detect every file, resolve names safely."""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from sdrest.models.detect import Detection, detect
from sdrest.models.hashing import HashCache, HashWorker, short_hash
from sdrest.models.headers import FileHeader, HeaderError, read_header

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = frozenset({".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin"})
# Typed folders (as the stable-diffusion.cpp-rest layout and common UIs name them) -> type.
FOLDER_TYPES: dict[str, str] = {
    "checkpoints": "checkpoint",
    "stable-diffusion": "checkpoint",
    "diffusion_models": "diffusion_model",
    "unet": "diffusion_model",
    "vae": "vae",
    "lora": "lora",
    "loras": "lora",
    "taesd": "taesd",
    "esrgan": "upscaler",
    "upscaler": "upscaler",
    "upscale_models": "upscaler",
    "controlnet": "controlnet",
    "embeddings": "embedding",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
    "t5": "text_encoder",
    "llm": "text_encoder",
}
TYPE_FOLDERS: dict[str, str] = {
    "lora": "lora",
    "upscaler": "esrgan",
    "vae": "vae",
    "taesd": "taesd",
    "checkpoint": "checkpoints",
}
GENERATION_ROLES = frozenset({"checkpoint", "diffusion_model"})
_HEADER_CACHE_SIZE = 32


class UnknownModelError(LookupError):
    """No model of that name (and type)."""


class PathNotAllowedError(ValueError):
    """A path that would leave its folder."""


class ModelEntry(msgspec.Struct, frozen=True):
    """One model file as the registry sees it."""

    name: str
    type: str
    path: str
    relpath: str
    size: int
    mtime: float
    format: str
    architecture: str
    role: str
    error: str | None = None


class ModelPreset(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model made of several files, with its default generation parameters."""

    name: str
    model: str | None = None
    diffusion_model: str | None = None
    vae: str | None = None
    taesd: str | None = None
    upscaler: str | None = None
    clip_l: str | None = None
    clip_g: str | None = None
    t5xxl: str | None = None
    llm: str | None = None
    clip_vision: str | None = None
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)


class ScanReport(msgspec.Struct):
    """What a scan found, and what it had to warn about."""

    count: int = 0
    warnings: list[str] = msgspec.field(default_factory=list)


def _entry_for(path: Path, root: Path, folder_type: str | None) -> ModelEntry:
    stat = path.stat()
    rel = str(path.relative_to(root))
    try:
        header = read_header(path)
        found = detect(header, path.name)
        fmt, error = header.format, None
    except HeaderError as exc:
        found, fmt, error = Detection("unknown", "unknown"), "unknown", str(exc)
    kind = folder_type or (found.role if found.role != "unknown" else "unknown")
    return ModelEntry(
        path.stem,
        kind,
        str(path.resolve()),
        rel,
        stat.st_size,
        stat.st_mtime,
        fmt,
        found.architecture,
        found.role,
        error,
    )


class ModelRegistry:
    """All model files under ``models_dir`` plus configured presets; thread-safe to read."""

    def __init__(
        self,
        models_dir: Path,
        presets: Mapping[str, ModelPreset] | None = None,
        hash_cache_path: Path | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self._presets = dict(presets or {})
        self._entries: list[ModelEntry] = []
        self._lock = threading.Lock()
        self._headers: dict[tuple[str, int, int], FileHeader] = {}
        self.hashes = HashCache(hash_cache_path)
        self._hasher = HashWorker(self.hashes)

    def scan(self) -> ScanReport:
        """(Re)scan the folder. A bad file is listed as unknown with its error; never raises."""
        report = ScanReport()
        entries: list[ModelEntry] = []
        root = self.models_dir
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() not in MODEL_SUFFIXES or not path.is_file():
                    continue
                top = (
                    path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else ""
                )
                folder_type = FOLDER_TYPES.get(top.lower())
                try:
                    entries.append(_entry_for(path, root, folder_type))
                except OSError as exc:
                    report.warnings.append(f"cannot read {path}: {exc}")
        else:
            report.warnings.append(f"models folder {root} does not exist")
        seen: dict[tuple[str, str], str] = {}
        for entry in entries:
            key = (entry.type, entry.name)
            if key in seen:
                report.warnings.append(
                    f"{entry.type} name {entry.name!r} is not unique: {seen[key]} and"
                    f" {entry.relpath}; the first one is used"
                )
            else:
                seen[key] = entry.relpath
        for preset in self._presets.values():
            report.warnings.extend(self._check_preset(preset, entries))
        for warning in report.warnings:
            logger.warning("%s", warning)
        report.count = len(entries)
        with self._lock:
            self._entries = entries
        return report

    def _check_preset(self, preset: ModelPreset, entries: list[ModelEntry]) -> list[str]:
        names = {e.name for e in entries}
        problems = []
        if not (preset.model or preset.diffusion_model):
            problems.append(f"preset {preset.name!r} names neither model nor diffusion_model")
        for field in (
            "model",
            "diffusion_model",
            "vae",
            "taesd",
            "upscaler",
            "clip_l",
            "clip_g",
            "t5xxl",
            "llm",
            "clip_vision",
        ):
            value = getattr(preset, field)
            if value and value not in names and not (self.models_dir / value).is_file():
                problems.append(f"preset {preset.name!r}: {field} {value!r} not found")
        return problems

    def entries(self, type: str | None = None) -> list[ModelEntry]:
        """Entries, optionally of one type."""
        with self._lock:
            entries = list(self._entries)
        return [e for e in entries if type is None or e.type == type]

    def get(self, name: str, type: str | None = None) -> ModelEntry:
        """An entry by name (first of that name when the type is not given)."""
        candidates = self.entries(type)
        for entry in candidates:
            if entry.name == name:
                return entry
        close = difflib.get_close_matches(name, [e.name for e in candidates], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        kind = f"{type} " if type else ""
        raise UnknownModelError(f"unknown {kind}model {name!r}{hint}")

    def preset(self, name: str) -> ModelPreset:
        """A configured preset by name."""
        try:
            return self._presets[name]
        except KeyError as exc:
            raise UnknownModelError(f"unknown preset {name!r}") from exc

    def presets(self) -> list[ModelPreset]:
        """Every configured preset."""
        return list(self._presets.values())

    def generation_models(self) -> list[ModelEntry | ModelPreset]:
        """What a user can pick as "the model": checkpoints, diffusion models, presets."""
        files: list[ModelEntry | ModelPreset] = [
            e
            for e in self.entries()
            if e.role in GENERATION_ROLES and e.type in ("checkpoint", "diffusion_model", "unknown")
        ]
        return files + self.presets()

    def resolve_relative(self, type: str, relpath: str) -> Path:
        """A path inside the folder of ``type``; anything escaping it raises PathNotAllowedError."""
        folder = (self.models_dir / TYPE_FOLDERS.get(type, type)).resolve()
        if not relpath or relpath.startswith(("/", "\\")) or Path(relpath).is_absolute():
            raise PathNotAllowedError(f"{relpath!r} must be relative to the {type} folder")
        candidate = (folder / relpath).resolve()  # resolves symlinks too
        if not candidate.is_relative_to(folder):
            raise PathNotAllowedError(f"{relpath!r} leaves the {type} folder")
        if not candidate.is_file():
            raise UnknownModelError(f"no {type} file {relpath!r}")
        return candidate

    def header(self, path: str | Path) -> FileHeader:
        """A file's header, cached by (path, size, mtime): submit-time checks stay cheap."""
        file = Path(path)
        stat = file.stat()
        key = (str(file), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._headers.get(key)
        if cached is not None:
            return cached
        header = read_header(file)
        with self._lock:
            if len(self._headers) >= _HEADER_CACHE_SIZE:
                self._headers.pop(next(iter(self._headers)))
            self._headers[key] = header
        return header

    def sha256(self, name: str, type: str | None = None) -> str | None:
        """The file's SHA-256 once the background worker has computed it."""
        return self.hashes.get(Path(self.get(name, type).path))

    def short_hash(self, name: str, type: str | None = None) -> str | None:
        """The 10-character hash, or None while not computed."""
        value = self.sha256(name, type)
        return None if value is None else short_hash(value)

    def start_hashing(self) -> None:
        """Hash every listed file in the background."""
        self._hasher.start(Path(e.path) for e in self.entries())

    def stop_hashing(self) -> None:
        """Stop the background hashing."""
        self._hasher.stop()

    def wait_for_hashes(self, timeout: float | None = None) -> None:
        """Block until the background hashing has finished (tests, CLI)."""
        self._hasher.join(timeout)
