"""Getting models from the Hugging Face hub: the decisions, without any network.

``sdrest pull`` and ``POST /api/models/download`` fetch files with :mod:`sdrest.models.hub`;
this module decides the rest: which files of a repository to take, which typed folder each one
goes to (from its header, as the registry would type it), and, when the files make one model of
a known family (a diffusion model plus its VAE and text encoders), the preset that names them,
appended to the TOML config file. Nothing here overwrites a file or a preset.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdrest.errors import ConflictError, InvalidRequestError, ModelNotFoundError
from sdrest.models.detect import UNKNOWN, Detection, detect
from sdrest.models.headers import HeaderError, read_header
from sdrest.models.paths import MODEL_SUFFIXES
from sdrest.models.registry import _TYPE_FOLDERS

HUB_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "hf.co/", "huggingface.co/")
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
STAGING = ".downloads"
"""Folder in the models folder where files are downloaded before they are placed (hidden
names are never scanned, so a partial download never shows as a model)."""
FAMILIES: dict[str, str] = {
    "flux2": "Flux.2",
    "flux": "Flux",
    "sd3": "SD3.5",
    "qwen_image": "Qwen-Image",
    "z_image": "Z-Image",
}
"""Diffusion architectures whose standalone diffusion model needs a VAE and text encoders
beside it: a download holding one of each gets a preset."""
TEXT_ENCODER_FIELDS: dict[str, str] = {a: a for a in ("clip_l", "clip_g", "t5xxl", "llm")}
"""Text encoder architecture (as detected) -> the preset field that names it."""
_CONFIG_LOCK = threading.Lock()


@dataclass(frozen=True)
class RemoteFile:
    """One file of a hub repository: its path there, size and (LFS files) SHA-256."""

    path: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class RepoRef:
    """What to pull: ``owner/name`` and the files named (none: decide from the listing)."""

    repo: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placed:
    """A model file the pull left in the models folder."""

    remote: str
    """Its path in the repository."""
    path: Path
    detection: Detection
    existed: bool = False
    """It was there already (same bytes): not downloaded, not moved."""
    error: str | None = None
    """Why its header could not be read (then it lies at the models folder's top)."""
    sha256: str | None = None
    """Its SHA-256 as the pull checked it against the hub's (None: the hub gave none)."""


class PullStopped(Exception):
    """Raised inside the download when its ``should_stop`` says so; nothing is placed."""


@dataclass
class PullOutcome:
    """What a pull left behind, and the sentences that say so."""

    repo: str
    placed: list[Placed] = field(default_factory=list)
    preset: str | None = None
    preset_fields: dict[str, str] = field(default_factory=dict)
    preset_written: bool = False
    """Whether the preset went into the config file (False: no config file to write to)."""
    messages: list[str] = field(default_factory=list)

    def files(self, models_dir: Path) -> list[str]:
        """The placed files relative to the models folder."""
        return [str(p.path.relative_to(models_dir)) for p in self.placed]

    def digests(self) -> list[tuple[Path, str]]:
        """(path, SHA-256) of the placed files the pull hashed: for the hash cache, so the
        registry does not read them all again."""
        return [(p.path, p.sha256) for p in self.placed if p.sha256 is not None]


@dataclass(frozen=True)
class PullOptions:
    """How to reach the hub and where to put things."""

    models_dir: Path
    config_file: Path | None = None
    revision: str | None = None
    token: str | None = None
    """None: huggingface_hub's own (``HF_TOKEN``, or the token ``hf auth login`` saved)."""
    endpoint: str | None = None
    """None: ``HF_ENDPOINT`` as set when the pull runs, else huggingface.co."""
    all_files: bool = False
    quiet: bool = True
    """No terminal progress bar (the server reports progress on the job instead)."""
    presets: frozenset[str] = frozenset()
    """Names of the presets configured already (never replaced)."""


class ChoiceNeededError(InvalidRequestError):
    """The repository holds several weight files and none was named (400)."""

    def __init__(self, repo: str, files: Sequence[RemoteFile]) -> None:
        self.repo = repo
        self.files = list(files)
        names = ", ".join(f.path for f in files)
        super().__init__(
            f"{repo} holds {len(files)} weight files: name one ({repo}/<file>) or ask for all;"
            f" the files: {names}",
            field="files",
        )


def parse_ref(ref: str, extra: Sequence[str] = ()) -> RepoRef:
    """``owner/name[/path/in/repo]`` (a huggingface.co URL works too) plus more file paths."""
    text = ref.strip()
    for prefix in HUB_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    parts = [p for p in text.strip("/").split("/") if p]
    if len(parts) < 2 or not all(_REPO_PART.fullmatch(p) for p in parts[:2]):
        raise InvalidRequestError(
            f"{ref!r} is not a hub repository: write owner/name or owner/name/file", field="repo"
        )
    rest = parts[2:]
    if len(rest) > 2 and rest[0] in ("blob", "resolve"):  # a URL copied from the browser
        rest = rest[2:]
    files = (["/".join(rest)] if rest else []) + [f.strip("/") for f in extra]
    for name in files:
        check_repo_path(name)
    return RepoRef("/".join(parts[:2]), tuple(dict.fromkeys(files)))


def check_repo_path(name: str) -> None:
    """Refuse (400) a file path that is not a plain relative path inside a repository."""
    bits = name.replace("\\", "/").split("/")
    if not name or "\x00" in name or name.startswith("/") or ".." in bits or "" in bits:
        raise InvalidRequestError(f"{name!r} is not a file path in a repository", field="files")


def is_weight(path: str) -> bool:
    """Whether a repository file is model weights (the suffixes the registry scans)."""
    return Path(path).suffix.lower() in MODEL_SUFFIXES


def choose_files(
    listing: Sequence[RemoteFile], wanted: Sequence[str], all_files: bool, repo: str
) -> list[RemoteFile]:
    """The files to fetch: the named ones, else the one weight file, else all with
    ``all_files``; several weight files and no choice raise :class:`ChoiceNeededError`."""
    weights = [f for f in listing if is_weight(f.path)]
    if wanted:
        by_path = {f.path: f for f in listing}
        missing = [w for w in wanted if w not in by_path]
        if missing:
            known = ", ".join(f.path for f in weights) or "none"
            raise ModelNotFoundError(
                f"{repo} has no file {missing[0]!r}; its weight files: {known}", field="files"
            )
        return [by_path[w] for w in wanted]
    if not weights:
        suffixes = ", ".join(sorted(MODEL_SUFFIXES))
        raise ModelNotFoundError(f"{repo} holds no model weight files ({suffixes})", field="repo")
    if len(weights) == 1 or all_files:
        return weights
    raise ChoiceNeededError(repo, weights)


def staging_dir(models_dir: Path, repo: str) -> Path:
    """Where a repository's files are downloaded before they are placed."""
    return models_dir / STAGING / repo.replace("/", "--")


def read_detection(path: Path) -> tuple[Detection, str | None]:
    """A file's architecture and role from its header (and why it is unreadable, if so)."""
    try:
        return detect(read_header(path), path.name), None
    except HeaderError as exc:
        return Detection(UNKNOWN, UNKNOWN), str(exc)


def type_folder(models_dir: Path, kind: str) -> Path:
    """The folder files of ``kind`` go to: an existing one the registry scans for that type
    (``loras/``, ``unet/``...), else the first name it knows (``diffusion_models/``...)."""
    names = _TYPE_FOLDERS[kind]
    try:
        children = sorted(models_dir.iterdir())
    except OSError:
        children = []
    for child in children:
        if child.is_dir() and child.name.lower() in names:
            return child
    return models_dir / names[0]


def target_path(models_dir: Path, filename: str, found: Detection) -> Path:
    """Where a downloaded file goes: its role's typed folder; the top of the models folder for
    a role the registry has no folder for (it types those by their header too)."""
    if found.role in _TYPE_FOLDERS:
        return type_folder(models_dir, found.role) / filename
    return models_dir / filename


def same_bytes(path: Path, size: int, sha256: str | None, digest: Callable[[Path], str]) -> bool:
    """Whether the file at ``path`` is the remote file (size, then SHA-256 when known)."""
    try:
        if path.stat().st_size != size:
            return False
    except OSError:
        return False
    return sha256 is None or digest(path) == sha256


def move_into_place(staged: Path, target: Path) -> None:
    """Move a downloaded file to ``target``; never over an existing file (409)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(staged, target)  # fails when target exists: no window for a clobber
    except FileExistsError:
        raise ConflictError(f"{target.name} already exists in {target.parent.name}/") from None
    except OSError:  # no hard links here (some network filesystems): check, then rename
        if target.exists():
            raise ConflictError(f"{target.name} already exists in {target.parent.name}/") from None
        shutil.move(staged, target)
        return
    staged.unlink()


def family_preset(
    placed: Sequence[Placed], name_of: Callable[[Placed], str]
) -> tuple[dict[str, str] | None, str]:
    """The preset fields when ``placed`` is one model of a known family (exactly one diffusion
    model of :data:`FAMILIES`, one VAE, at most one file per text encoder field), else None;
    with a sentence saying why (or which family)."""
    diffusion = [p for p in placed if p.detection.role == "diffusion_model"]
    if len(diffusion) != 1:
        if len(diffusion) > 1:
            return None, "no preset: several diffusion models; pull the files of one model"
        return None, ""
    main = diffusion[0]
    family = FAMILIES.get(main.detection.architecture)
    if family is None:
        return None, f"no preset: no known family for architecture {main.detection.architecture}"
    vaes = [p for p in placed if p.detection.role == "vae"]
    if len(vaes) != 1:
        return None, (
            f"no preset: the {family} diffusion model needs one VAE beside it"
            f" ({len(vaes)} in this download); write a preset naming its VAE and text encoders"
        )
    fields = {"diffusion_model": name_of(main), "vae": name_of(vaes[0])}
    for p in placed:
        field = TEXT_ENCODER_FIELDS.get(p.detection.architecture)
        if p.detection.role != "text_encoder" or field is None:
            continue
        if field in fields:
            return None, f"no preset: several {field} text encoders; pull the files of one model"
        fields[field] = name_of(p)
    if len(fields) == 2:
        return None, f"no preset: the {family} diffusion model needs its text encoders beside it"
    return fields, f"{family}: diffusion model, VAE and text encoders"


def preset_name(repo: str, taken: set[str]) -> str:
    """A preset name from the repository's name that no preset or model file uses."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", repo.split("/")[-1]).strip("-.") or "model"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-preset" if n == 2 else f"{base}-preset{n}"
    return name


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def preset_toml(name: str, fields: dict[str, str], comment: str = "") -> str:
    """A ``[presets.<name>]`` table (JSON string escapes are valid TOML basic strings)."""
    lines = [f"# {comment}"] if comment else []
    lines.append(f"[presets.{_toml_key(name)}]")
    lines += [f"{_toml_key(k)} = {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def configured_presets(path: Path | None) -> dict[str, Any]:
    """The ``[presets]`` tables of a TOML config file as written there ({} without a file)."""
    if path is None or not path.is_file():
        return {}
    try:
        presets = tomllib.loads(path.read_text(encoding="utf-8")).get("presets", {})
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequestError(f"config file {path} is not valid TOML: {exc}") from exc
    return presets if isinstance(presets, dict) else {}


def add_preset_to_config(path: Path, name: str, fields: dict[str, str], comment: str = "") -> bool:
    """Append the preset to the TOML file (created when missing). False, with the file
    untouched, when a preset of that name is there already; the file's other text (comments,
    order) is kept as it was."""
    with _CONFIG_LOCK:
        original = path.read_text(encoding="utf-8") if path.exists() else ""
        try:
            presets = tomllib.loads(original).get("presets", {})
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequestError(f"config file {path} is not valid TOML: {exc}") from exc
        if isinstance(presets, dict) and name in presets:
            return False
        separator = "" if not original else ("\n" if original.endswith("\n") else "\n\n")
        text = original + separator + preset_toml(name, fields, comment)
        try:
            written = tomllib.loads(text).get("presets", {}).get(name)
        except (tomllib.TOMLDecodeError, AttributeError):
            written = None
        if written != fields:
            raise InvalidRequestError(
                f"cannot add [presets.{name}] to {path} (its presets are not plain tables)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.sdrest-pull")
        partial.write_text(text, encoding="utf-8")
        if original:
            shutil.copymode(path, partial)  # the file may hold secrets: keep its permissions
        partial.replace(path)
        return True
