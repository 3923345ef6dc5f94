"""SHA-256 of model files, computed once in the background and cached by (path, size, mtime).

The cache is a JSON file ``{"<abs path>": {"size": n, "mtime_ns": t, "sha256": "..."}}`` written
atomically (temp file + ``os.replace``); a file whose size or mtime changed simply misses and is
hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

HASH_CACHE = "hashes.json"
"""The hash cache's file name, in the data folder."""

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20  # 1 MiB


class HasPath(Protocol):
    """Anything naming a file: a :class:`~sdrest.models.registry.ModelEntry` for instance."""

    @property
    def path(self) -> str:
        """Absolute path of the file."""
        ...


def sha256_file(path: Path) -> str:
    """Stream a file through SHA-256 in 1 MiB chunks (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def short_hash(sha256: str) -> str:
    """The 10-character form AUTOMATIC1111 clients show."""
    return sha256[:10]


def _as_path(item: HasPath | Path | str) -> Path:
    if isinstance(item, Path | str):
        return Path(item)
    return Path(item.path)


class HashCache:
    """Persistent ``(abs path, size, mtime_ns) -> sha256`` map; thread-safe.

    ``path`` None keeps the cache in memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._hashes: dict[str, tuple[int, int, str]] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.warning("hash cache %s unreadable (%s); starting afresh", path, exc)
            return
        if not isinstance(loaded, dict):
            logger.warning("hash cache %s is not an object; starting afresh", path)
            return
        for key, value in loaded.items():
            if (
                isinstance(value, dict)
                and isinstance(value.get("size"), int)
                and isinstance(value.get("mtime_ns"), int)
                and isinstance(value.get("sha256"), str)
            ):
                self._hashes[str(key)] = (value["size"], value["mtime_ns"], value["sha256"])

    @staticmethod
    def _identity(file: Path) -> tuple[str, int, int]:
        stat = file.stat()
        return str(file.resolve()), stat.st_size, stat.st_mtime_ns

    def sha256_of(self, item: HasPath | Path | str) -> str | None:
        """The cached hash of the file as it is now (same size and mtime), or None."""
        try:
            key, size, mtime_ns = self._identity(_as_path(item))
        except OSError:
            return None
        with self._lock:
            cached = self._hashes.get(key)
        if cached is None or cached[:2] != (size, mtime_ns):
            return None
        return cached[2]

    def compute(self, path: Path | str) -> str:
        """Hash the file (unless cached as it is now), remember it and persist the cache."""
        file = Path(path)
        cached = self.sha256_of(file)
        if cached is not None:
            return cached
        key, size, mtime_ns = self._identity(file)
        value = sha256_file(file)
        if self._identity(file) != (key, size, mtime_ns):
            # Changed while being read: return the hash but do not cache a torn read.
            logger.info("%s changed while hashing; not cached", file)
            return value
        with self._lock:
            self._hashes[key] = (size, mtime_ns, value)
        self.save()
        return value

    def remember(self, digests: Iterable[tuple[Path, str]]) -> None:
        """Record hashes computed elsewhere (a pull checks each file it downloads) for the
        files as they are now, and persist the cache once."""
        recorded = []
        for path, sha256 in digests:
            try:
                recorded.append((*self._identity(path), sha256))
            except OSError:
                continue  # gone already: nothing to remember
        with self._lock:
            for key, size, mtime_ns, sha256 in recorded:
                self._hashes[key] = (size, mtime_ns, sha256)
        if recorded:
            self.save()

    def save(self) -> None:
        """Write the cache atomically (never leaves half a file); errors are logged."""
        if self.path is None:
            return
        with self._lock:
            body = {
                k: {"size": s, "mtime_ns": m, "sha256": h} for k, (s, m, h) in self._hashes.items()
            }
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(
                    prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
                )
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        json.dump(body, handle, indent=0, sort_keys=True)
                    os.replace(tmp, self.path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                logger.warning("cannot write hash cache %s: %s", self.path, exc)


class HashWorker:
    """Computes missing hashes on a daemon thread so start-up and requests never wait for it."""

    def __init__(self, cache: HashCache) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, entries: Iterable[HasPath | Path | str]) -> None:
        """Hash, in the background, every file not cached yet (restarts a running batch)."""
        self.stop()
        pending = [p for p in (_as_path(e) for e in entries) if self.cache.sha256_of(p) is None]
        if not pending:
            return
        with self._lock:
            self._stop.clear()
            thread = threading.Thread(
                target=self._run, args=(pending,), name="sdrest-hash", daemon=True
            )
            self._thread = thread
            thread.start()

    def _run(self, files: list[Path]) -> None:
        for file in files:
            if self._stop.is_set():
                logger.debug("hashing stopped with files left")
                return
            try:
                self.cache.compute(file)
                logger.debug("hashed %s", file)
            except OSError as exc:
                logger.warning("cannot hash %s: %s", file, exc)

    @property
    def running(self) -> bool:
        """Whether a batch is being hashed now."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop after the file being hashed now, and wait for the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the current batch; True when it has finished."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True
