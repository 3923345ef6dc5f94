"""The model registry: scan the models folder, type and detect every file, resolve names safely.

Typed subfolders (``checkpoints/``, ``lora/``, ``vae/``...) decide a file's ``type``; files
anywhere else are typed by header detection. A name is the file stem and should be unique per
type; duplicates are reported and the shallowest file wins. Presets (models made of several
files) come from the settings and are checked against the folder on every scan.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import msgspec

from sdrest.errors import ModelNotFoundError, PathNotAllowedError
from sdrest.models.detect import UNKNOWN, Detection, detect
from sdrest.models.hashing import HashCache, HashWorker, short_hash
from sdrest.models.headers import FileHeader, HeaderError, read_header
from sdrest.models.paths import MODEL_SUFFIXES, check_relative, contains, is_file, walk
from sdrest.schemas.preset import ModelPreset

logger = logging.getLogger(__name__)

# Typed folders, as stable-diffusion.cpp-rest, A1111 and ComfyUI name them (matched ignoring case).
_TYPE_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoint": ("checkpoints", "stable-diffusion"),
    "diffusion_model": ("diffusion_models", "unet"),
    "vae": ("vae",),
    "lora": ("lora", "loras"),
    "taesd": ("taesd",),
    "upscaler": ("esrgan", "upscaler", "upscale_models"),
    "controlnet": ("controlnet",),
    "embedding": ("embeddings",),
    "text_encoder": ("text_encoders", "clip", "t5", "llm"),
}
FOLDER_TYPES: dict[str, str] = {f: kind for kind, fs in _TYPE_FOLDERS.items() for f in fs}
GENERATION_TYPES = ("checkpoint", "diffusion_model")
# Preset field -> the type a registry name is looked up as first.
PRESET_FIELDS: dict[str, str] = {
    **{kind: kind for kind in ("diffusion_model", "vae", "taesd", "upscaler")},
    "model": "checkpoint",
    **dict.fromkeys(("clip_l", "clip_g", "t5xxl", "llm", "clip_vision"), "text_encoder"),
}
_HEX = re.compile(r"[0-9a-fA-F]{8,64}")
"""A SHA-256 prefix as users type them: A1111's 8/10-digit short hashes up to the full digest."""
_HEADER_CACHE_SIZE = 32


class UnknownModelError(ModelNotFoundError, LookupError):
    """No model of that name (and type); the message lists close names (404 model_not_found)."""


class ModelEntry(msgspec.Struct, frozen=True):
    """One model file as the registry sees it (``error`` set when its header is unreadable)."""

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

    @property
    def generates(self) -> bool:
        """Whether a request may name this file as "the model" (see ``generation_models``)."""
        return (
            self.type in GENERATION_TYPES
            and self.role in (*GENERATION_TYPES, UNKNOWN)
            and self.error is None
        )


class ScanReport(msgspec.Struct):
    """What a scan found and what it warns about (also logged)."""

    count: int = 0
    errors: int = 0
    warnings: list[str] = msgspec.field(default_factory=list)
    duplicates: dict[str, list[str]] = msgspec.field(default_factory=dict)
    preset_errors: dict[str, str] = msgspec.field(default_factory=dict)


_NOTHING = Detection(UNKNOWN, UNKNOWN)


class _Probe(NamedTuple):
    """What a file's header said, valid while its size and mtime stay the same."""

    size: int
    mtime_ns: int
    format: str
    found: Detection
    error: str | None

    def entry(self, path: Path, rel: Path, folder_type: str | None, mtime: float) -> ModelEntry:
        return ModelEntry(
            name=path.stem,
            type=folder_type or self.found.role,  # a typed folder wins over detection
            path=str(path.absolute()),
            relpath=str(rel),
            size=self.size,
            mtime=mtime,
            format=self.format,
            architecture=self.found.architecture,
            role=self.found.role,
            error=self.error,
        )


class _Snapshot(msgspec.Struct, frozen=True):
    entries: tuple[ModelEntry, ...] = ()
    index: dict[tuple[str, str], ModelEntry] = msgspec.field(default_factory=dict)
    duplicates: dict[str, list[str]] = msgspec.field(default_factory=dict)
    preset_errors: dict[str, str] = msgspec.field(default_factory=dict)


class ModelRegistry:
    """Model files under ``models_dir`` plus configured presets; thread-safe to read."""

    def __init__(
        self,
        models_dir: Path,
        presets: Mapping[str, ModelPreset] | None = None,
        hash_cache_path: Path | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self._presets = dict(presets or {})
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._snapshot = _Snapshot()
        self._detected: dict[str, _Probe] = {}
        self._headers: OrderedDict[tuple[str, int, int], FileHeader] = OrderedDict()
        self.hashes = HashCache(hash_cache_path)
        self._hasher = HashWorker(self.hashes)

    # -- scanning ----------------------------------------------------------------------------

    def scan(self) -> ScanReport:
        """(Re)scan the folder; a bad file is listed as unknown with its error. Never raises."""
        with self._scan_lock:
            report = ScanReport()
            entries: list[ModelEntry] = []
            if self.models_dir.is_dir():
                detected: dict[str, _Probe] = {}
                for path in walk(self.models_dir, report.warnings):
                    entries.append(self._entry_for(path, detected))
                self._detected = detected  # only files that still exist stay cached
            else:
                report.warnings.append(f"models folder {self.models_dir} does not exist")
            entries.sort(key=lambda e: e.relpath)
            index, duplicates = self._index(entries)
            for key, paths in duplicates.items():
                report.warnings.append(
                    f"{key.replace('/', ' name ', 1)!s} is not unique: {', '.join(paths)};"
                    f" {paths[0]} is used"
                )
            snapshot = _Snapshot(tuple(entries), index, duplicates)
            preset_errors = {
                preset.name: "; ".join(problems)
                for preset in self._presets.values()
                if (problems := self._check_preset(preset, snapshot))
            }
            report.warnings.extend(f"preset {n!r}: {e}" for n, e in preset_errors.items())
            report.count, report.errors = len(entries), sum(e.error is not None for e in entries)
            report.duplicates, report.preset_errors = duplicates, preset_errors
            with self._lock:
                self._snapshot = _Snapshot(tuple(entries), index, duplicates, preset_errors)
        for warning in report.warnings:
            logger.warning("%s", warning)
        for entry in entries:
            if entry.error:
                logger.warning("unreadable model file %s: %s", entry.relpath, entry.error)
        logger.info("models: %d files, %d unreadable", report.count, report.errors)
        return report

    def _entry_for(self, path: Path, detected: dict[str, _Probe]) -> ModelEntry:
        rel = path.relative_to(self.models_dir)
        folder_type = FOLDER_TYPES.get(rel.parts[0].lower()) if len(rel.parts) > 1 else None
        try:
            stat = path.stat()
        except OSError as exc:  # a dangling symlink
            probe = _Probe(0, 0, UNKNOWN, _NOTHING, f"cannot read {rel}: {exc.strerror or exc}")
            return probe.entry(path, rel, folder_type, 0.0)
        probe = self._detected.get(str(path)) or _Probe(0, -1, UNKNOWN, _NOTHING, None)
        if (probe.size, probe.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            try:
                header = read_header(path)
                found, fmt, error = detect(header, path.name), header.format, None
            except HeaderError as exc:
                found, fmt, error = _NOTHING, UNKNOWN, str(exc)
            except Exception as exc:  # never let one file break a scan
                logger.exception("unexpected error reading %s", path)
                found, fmt, error = _NOTHING, UNKNOWN, f"unreadable: {exc}"
            probe = _Probe(stat.st_size, stat.st_mtime_ns, fmt, found, error)
        detected[str(path)] = probe
        return probe.entry(path, rel, folder_type, stat.st_mtime)

    @staticmethod
    def _index(
        entries: list[ModelEntry],
    ) -> tuple[dict[tuple[str, str], ModelEntry], dict[str, list[str]]]:
        index: dict[tuple[str, str], ModelEntry] = {}
        groups: dict[tuple[str, str], list[ModelEntry]] = {}
        # Shallowest path first, then alphabetical: the winner of a duplicate is predictable.
        for entry in sorted(entries, key=lambda e: (e.relpath.count(os.sep), e.relpath)):
            groups.setdefault((entry.type, entry.name), []).append(entry)
            index.setdefault((entry.type, entry.name), entry)
        duplicates = {
            f"{kind}/{name}": [e.relpath for e in group]
            for (kind, name), group in groups.items()
            if len(group) > 1
        }
        return index, duplicates

    # -- lookups -----------------------------------------------------------------------------

    def entries(self, type: str | None = None) -> list[ModelEntry]:
        """Entries (sorted by relative path), optionally only those of one type."""
        with self._lock:
            entries = self._snapshot.entries
        return [e for e in entries if type is None or e.type == type]

    @property
    def duplicates(self) -> dict[str, list[str]]:
        """``"type/name" -> relpaths`` for names that are not unique per type (first is used)."""
        with self._lock:
            return {k: list(v) for k, v in self._snapshot.duplicates.items()}

    def get(self, name: str, type: str | None = None) -> ModelEntry:
        """An entry by name (file stem; a relative path or file name also works).

        Without ``type``, generation models win over components of the same name.
        """
        with self._lock:
            snapshot = self._snapshot
        return self._get(snapshot, name, type)

    def _get(self, snapshot: _Snapshot, name: str, type: str | None) -> ModelEntry:
        types = [type] if type is not None else self._type_order(snapshot)
        for kind in types:
            entry = snapshot.index.get((kind, name))
            if entry is not None:
                return entry
        for entry in snapshot.entries:
            if type is not None and entry.type != type:
                continue
            if name in (entry.relpath, Path(entry.path).name):
                return entry
        candidates = sorted({e.name for e in snapshot.entries if type is None or e.type == type})
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        kind = f"{type} " if type else ""
        raise UnknownModelError(f"unknown {kind}model {name!r}{hint}")

    @staticmethod
    def _type_order(snapshot: _Snapshot) -> list[str]:
        others = sorted({k for k, _ in snapshot.index} - set(GENERATION_TYPES))
        return [*GENERATION_TYPES, *others]

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
            self._headers[key] = header
            while len(self._headers) > _HEADER_CACHE_SIZE:
                self._headers.popitem(last=False)
        return header

    # -- paths -------------------------------------------------------------------------------

    def type_folders(self, type: str) -> list[Path]:
        """Existing folders of ``type`` in the models folder (``lora/``, ``loras/``...)."""
        try:
            children = sorted(self.models_dir.iterdir())
        except OSError:
            return []
        return [c for c in children if c.is_dir() and FOLDER_TYPES.get(c.name.lower()) == type]

    def resolve_relative(self, type: str, relpath: str) -> Path:
        """A registry name of ``type``, or a path relative to that type's folder.

        ``..``, absolute paths and symlinks leading outside the folder raise
        :class:`PathNotAllowedError`; a safe path naming no file raises :class:`UnknownModelError`.
        """
        try:
            return Path(self.get(relpath, type).path)
        except UnknownModelError:
            pass
        check_relative(relpath, type)
        folders = self.type_folders(type) or [self.models_dir / type]
        for folder in folders:
            root = folder.resolve()
            for suffix in ("", *sorted(MODEL_SUFFIXES)):
                candidate = (folder / (relpath + suffix)).resolve()  # resolves symlinks too
                if not contains(root, candidate):
                    raise PathNotAllowedError(f"{relpath!r} leads outside the {type} folder")
                if is_file(candidate):
                    return candidate
        raise UnknownModelError(f"no {type} named or at {relpath!r}")

    def resolve_component(self, field: str, value: str) -> Path:
        """A preset component: a registry name (its field's type first) or a path in models_dir."""
        with self._lock:
            snapshot = self._snapshot
        return self._resolve_component(snapshot, field, value)

    def _resolve_component(self, snapshot: _Snapshot, field: str, value: str) -> Path:
        preferred = PRESET_FIELDS.get(field)
        for kind in (preferred, None):
            try:
                return Path(self._get(snapshot, value, kind).path)
            except UnknownModelError:
                continue
        check_relative(value, "models")
        root = self.models_dir.resolve()
        candidate = (self.models_dir / value).resolve()
        if not contains(root, candidate):
            raise PathNotAllowedError(f"{value!r} leads outside the models folder")
        if not is_file(candidate):
            raise UnknownModelError(f"{field} {value!r} is neither a model name nor a file")
        return candidate

    # -- presets -----------------------------------------------------------------------------

    def _check_preset(self, preset: ModelPreset, snapshot: _Snapshot) -> list[str]:
        problems = []
        if not (preset.model or preset.diffusion_model):
            problems.append("names neither model nor diffusion_model")
        if any(e.name == preset.name for e in snapshot.entries if e.type in GENERATION_TYPES):
            problems.append("has the same name as a model file; the preset wins")
        for field in PRESET_FIELDS:
            value = getattr(preset, field)
            if value:
                try:
                    self._resolve_component(snapshot, field, value)
                except (UnknownModelError, PathNotAllowedError) as exc:
                    problems.append(f"{field}: {exc}")
        return problems

    def preset(self, name: str) -> ModelPreset:
        """A configured preset by name (raises :class:`UnknownModelError`)."""
        try:
            return self._presets[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._presets), n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownModelError(f"unknown preset {name!r}{hint}") from None

    def add_preset(self, preset: ModelPreset) -> bool:
        """Add a preset (a model download made one); False when the name is taken. Checked on
        the next scan."""
        with self._lock:
            if preset.name in self._presets:
                return False
            self._presets[preset.name] = preset
            return True

    def presets(self) -> list[ModelPreset]:
        """Every configured preset."""
        return list(self._presets.values())

    def preset_error(self, name: str) -> str | None:
        """What is wrong with a preset after the last scan, or None."""
        with self._lock:
            return self._snapshot.preset_errors.get(name)

    def generation_models(self) -> list[ModelEntry | ModelPreset]:
        """What a user can pick as "the model": checkpoints, diffusion models, then presets."""
        files: list[ModelEntry | ModelPreset] = [e for e in self.entries() if e.generates]
        return files + self.presets()

    def find(self, identifier: str, type: str | None = None) -> ModelEntry | ModelPreset:
        """THE lookup every family uses: a preset name, a file's name, file name or relative
        path, or a SHA-256 prefix of 8+ hex digits (once hashed). ``type`` narrows it
        (``"preset"`` for presets only). Raises :class:`UnknownModelError` (404)."""
        if type in (None, "preset"):
            preset = self._presets.get(identifier)
            if preset is not None:
                return preset
            if type == "preset":
                return self.preset(identifier)  # raises, with close names
        try:
            return self.get(identifier, type)
        except UnknownModelError:
            if not _HEX.fullmatch(identifier):
                raise
            wanted = identifier.lower()
            for entry in self.entries(type):
                digest = self.hashes.sha256_of(entry)
                if digest is not None and digest.startswith(wanted):
                    return entry
            raise

    def main_entry(self, name: str) -> ModelEntry:
        """The file that generates for ``name``: the entry itself, or a preset's main model
        (``model`` or ``diffusion_model``). Raises :class:`UnknownModelError` (404)."""
        found = self.find(name)
        if isinstance(found, ModelEntry):
            return found
        main = found.model or found.diffusion_model
        if not main:
            raise UnknownModelError(f"preset {name!r} names no model file")
        return self.get(main, PRESET_FIELDS["model" if found.model else "diffusion_model"])

    # -- hashes ------------------------------------------------------------------------------

    def sha256(self, name: str, type: str | None = None) -> str | None:
        """The file's SHA-256 once computed (None before, or for an unknown name)."""
        try:
            return self.hashes.sha256_of(self.get(name, type))
        except UnknownModelError:
            return None

    def short_hash(self, name: str, type: str | None = None) -> str | None:
        """The 10-character hash, or None while not computed."""
        value = self.sha256(name, type)
        return None if value is None else short_hash(value)

    def start_hashing(self) -> None:
        """Hash every readable listed file in the background (cached ones are skipped)."""
        self._hasher.start(e for e in self.entries() if e.error is None)

    def stop_hashing(self) -> None:
        """Stop the background hashing (after the file being hashed now)."""
        self._hasher.stop()

    def wait_for_hashes(self, timeout: float | None = None) -> bool:
        """Block until the background hashing has finished; True when it has."""
        return self._hasher.join(timeout)
