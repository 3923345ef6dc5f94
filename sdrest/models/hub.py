"""A pull from the Hugging Face hub: list, choose, download, check, place, preset.

Downloads go through ``huggingface_hub`` (``hf_hub_download`` into a hidden staging folder in
the models folder: its retries resume an interrupted transfer with a Range request, it checks
sizes and draws its progress bar). Each file's SHA-256 is then checked against the hub's LFS
checksum; a mismatch deletes the file. The decisions (which files, which folder, which preset)
are :mod:`sdrest.models.pull`'s. Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

from sdrest.errors import (
    ChecksumMismatchError,
    ConflictError,
    DownloadError,
    ModelNotFoundError,
    SdrestError,
)
from sdrest.models.hashing import sha256_file
from sdrest.models.paths import walk
from sdrest.models.pull import (
    Placed,
    PullOptions,
    PullOutcome,
    PullStopped,
    RemoteFile,
    RepoRef,
    add_preset_to_config,
    choose_files,
    configured_presets,
    family_preset,
    move_into_place,
    preset_name,
    preset_toml,
    read_detection,
    same_bytes,
    staging_dir,
    target_path,
)
from sdrest.models.registry import GENERATION_TYPES, ModelRegistry

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""``(bytes done, bytes total)`` of the whole pull, from the downloading thread."""


def _endpoint(options: PullOptions) -> str | None:
    return options.endpoint or os.environ.get("HF_ENDPOINT") or None


def translate(exc: Exception, repo: str, what: str = "") -> SdrestError:
    """A huggingface_hub or network failure as one of sdrest's errors."""
    where = f"{repo}/{what}" if what else repo
    if isinstance(exc, GatedRepoError):
        return DownloadError(
            f"{repo} is gated: accept its terms on huggingface.co and pull with a token"
            " (--token or HF_TOKEN)"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotFoundError(
            f"no repository {repo} on the hub (a private one needs a token)", field="repo"
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelNotFoundError(f"{repo} has no revision of that name", field="revision")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 404:
            return ModelNotFoundError(f"the hub has no {where}", field="files")
        return DownloadError(f"the hub answered {status} for {where}")
    return DownloadError(f"downloading {where} failed: {exc}")


def list_repo(repo: str, options: PullOptions) -> list[RemoteFile]:
    """Every file of the repository (at ``options.revision``), with sizes and checksums."""
    api = HfApi(endpoint=_endpoint(options), token=options.token)
    try:
        items = list(api.list_repo_tree(repo, recursive=True, revision=options.revision))
    except Exception as exc:
        raise translate(exc, repo) from exc
    return [
        RemoteFile(item.path, item.size, item.lfs.sha256 if item.lfs is not None else None)
        for item in items
        if isinstance(item, RepoFile)
    ]


def _bar_class(report: Callable[[int], None], quiet: bool) -> type[Any]:
    """huggingface_hub's progress bar, also counting bytes for ``report``."""

    class Bar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if quiet:
                kwargs["disable"] = True
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

        def update(self, n: float | None = 1) -> bool | None:
            report(int(n or 0))  # may raise PullStopped: the download ends there
            result: bool | None = super().update(n)
            return result

    return Bar


def _discard(staging: Path, remote: str) -> None:
    """Delete a staged file and huggingface_hub's record of it (else it would count as done)."""
    (staging / remote).unlink(missing_ok=True)
    metadata = staging / ".cache" / "huggingface" / "download" / f"{remote}.metadata"
    metadata.unlink(missing_ok=True)


def fetch(repo: str, remote: RemoteFile, options: PullOptions, bar: type[Any]) -> Path:
    """Download one file into the staging folder and check its SHA-256 (mismatch: deleted,
    :class:`ChecksumMismatchError`)."""
    staging = staging_dir(options.models_dir, repo)
    try:
        local = hf_hub_download(
            repo,
            remote.path,
            revision=options.revision,
            token=options.token,
            endpoint=_endpoint(options),
            local_dir=staging,
            tqdm_class=bar,
        )
    except PullStopped:
        raise
    except Exception as exc:
        raise translate(exc, repo, remote.path) from exc
    path = Path(local)
    if remote.sha256 is not None:
        digest = sha256_file(path)
        if digest != remote.sha256.lower():
            _discard(staging, remote.path)
            raise ChecksumMismatchError(
                f"{remote.path}: SHA-256 {digest} differs from the hub's {remote.sha256};"
                " the file was deleted"
            )
    return path


def find_existing(models_dir: Path, remote: RemoteFile) -> Path | None:
    """A file of the same name and bytes somewhere in the models folder already."""
    name = Path(remote.path).name
    for path in walk(models_dir, []):
        if path.name == name and same_bytes(path, remote.size, remote.sha256, sha256_file):
            return path
    return None


def _checked(remote: RemoteFile) -> str | None:
    """The digest a placed file was checked against (None: the hub gave none, nothing hashed)."""
    return remote.sha256.lower() if remote.sha256 is not None else None


def _place(repo: str, remote: RemoteFile, staged: Path, options: PullOptions) -> Placed:
    detection, error = read_detection(staged)
    target = target_path(options.models_dir, staged.name, detection)
    if target.exists() and same_bytes(target, remote.size, remote.sha256, sha256_file):
        staged.unlink()
        return Placed(remote.path, target, detection, True, error, _checked(remote))
    try:
        move_into_place(staged, target)
    except ConflictError as exc:
        kept = staged.relative_to(options.models_dir)
        raise ConflictError(
            f"{exc.message} and differs: not overwritten; the download is kept at {kept}"
        ) from None
    return Placed(remote.path, target, detection, error=error, sha256=_checked(remote))


class _Counter:
    """Bytes of the whole pull: finished files plus the running one's bar."""

    def __init__(
        self, total: int, progress: ProgressFn | None, should_stop: Callable[[], bool]
    ) -> None:
        self.total, self.finished, self.running = total, 0, 0
        self.progress, self.should_stop = progress, should_stop

    def add(self, n: int) -> None:
        if self.should_stop():
            raise PullStopped
        self.running += n
        self._report()

    def file_done(self, size: int) -> None:
        self.finished += size
        self.running = 0
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(min(self.total, self.finished + self.running), self.total)


def pull(
    ref: RepoRef,
    options: PullOptions,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PullOutcome:
    """Fetch the files ``ref`` names (see :func:`sdrest.models.pull.choose_files`), place each
    in its typed folder, and write a preset when they make one model of a known family."""
    chosen = choose_files(list_repo(ref.repo, options), ref.files, options.all_files, ref.repo)
    outcome = PullOutcome(ref.repo)
    counter = _Counter(sum(f.size for f in chosen), progress, should_stop)
    bar = _bar_class(counter.add, options.quiet)
    models_dir = options.models_dir
    try:
        for remote in chosen:
            existing = find_existing(models_dir, remote)
            if existing is not None:
                detection, error = read_detection(existing)
                placed = Placed(remote.path, existing, detection, True, error, _checked(remote))
                outcome.placed.append(placed)
            else:
                staged = fetch(ref.repo, remote, options, bar)
                outcome.placed.append(_place(ref.repo, remote, staged, options))
            counter.file_done(remote.size)
    finally:
        _tidy(staging_dir(models_dir, ref.repo))
    for placed in outcome.placed:
        rel = placed.path.relative_to(models_dir)
        verb = "already there" if placed.existed else "downloaded"
        what = placed.detection.architecture if placed.error is None else "unreadable header"
        outcome.messages.append(f"{rel}: {verb} ({what}, {placed.detection.role})")
    _preset(ref, options, outcome)
    for message in outcome.messages:
        logger.info("pull %s: %s", ref.repo, message)
    return outcome


def _tidy(staging: Path) -> None:
    """Drop the staging folder unless a file is left in it (one that could not be placed)."""
    if not staging.is_dir():
        return
    left = [p for p in staging.rglob("*") if p.is_file() and ".cache" not in p.parts]
    if not left:
        shutil.rmtree(staging, ignore_errors=True)
        with_parent = staging.parent
        if with_parent.is_dir() and not any(with_parent.iterdir()):
            with_parent.rmdir()


def _preset(ref: RepoRef, options: PullOptions, outcome: PullOutcome) -> None:
    models_dir = options.models_dir
    registry = ModelRegistry(models_dir)
    registry.scan()

    def name_of(placed: Placed) -> str:
        kind = placed.detection.role
        try:  # the registry name when it leads to this very file, else the relative path
            if Path(registry.get(placed.path.stem, kind).path) == placed.path.absolute():
                return placed.path.stem
        except LookupError:
            pass
        return str(placed.path.relative_to(models_dir))

    fields, why = family_preset(outcome.placed, name_of)
    if fields is None:
        if why:
            outcome.messages.append(why)
        return
    configured = configured_presets(options.config_file)
    same = next((n for n, body in configured.items() if body == fields), None)
    if same is not None:  # pulled before: the preset is there, as it would be written
        outcome.preset, outcome.preset_fields = same, fields
        outcome.messages.append(f"preset {same!r} in {options.config_file} names these files")
        return
    taken = set(options.presets) | set(configured)
    taken |= {e.name for e in registry.entries() if e.type in GENERATION_TYPES}
    name = preset_name(ref.repo, taken)
    comment = f"written by sdrest pull {ref.repo} ({why})"
    outcome.preset, outcome.preset_fields = name, fields
    if options.config_file is None:
        outcome.messages.append(
            f"preset {name!r} ({why}); no config file to write it to (--config or"
            f" SDREST_CONFIG): add this to yours:\n{preset_toml(name, fields)}"
        )
        return
    if not add_preset_to_config(options.config_file, name, fields, comment):  # written meanwhile
        outcome.preset = None
        outcome.messages.append(f"preset {name!r} is in {options.config_file} already: unchanged")
        return
    outcome.preset_written = True
    outcome.messages.append(f"preset {name!r} written to {options.config_file} ({why})")
