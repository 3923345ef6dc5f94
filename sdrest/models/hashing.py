"""SHA-256 of model files, computed once in the background and cached by (path, size, mtime)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Stream a file through SHA-256 in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def short_hash(sha256: str) -> str:
    """The 10-character form AUTOMATIC1111 clients show."""
    return sha256[:10]


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


class HashCache:
    """Persistent ``(path, size, mtime) -> sha256`` map; a changed file misses and is rehashed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict):
                    self._hashes = {str(k): str(v) for k, v in loaded.items()}
            except (OSError, ValueError):
                logger.warning("hash cache %s unreadable; starting afresh", path)

    def get(self, file: Path) -> str | None:
        """The cached hash of the file as it is now, or None."""
        try:
            key = _key(file)
        except OSError:
            return None
        with self._lock:
            return self._hashes.get(key)

    def compute(self, file: Path) -> str:
        """Hash the file (unless cached) and remember it."""
        cached = self.get(file)
        if cached is not None:
            return cached
        key = _key(file)
        value = sha256_file(file)
        with self._lock:
            self._hashes[key] = value
        self._save()
        return value

    def _save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            text = json.dumps(self._hashes)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.path)  # atomic: a crash never leaves half a file
        except OSError:
            logger.warning("cannot write hash cache %s", self.path)


class HashWorker:
    """Hashes files on a daemon thread so start-up and requests never wait for it."""

    def __init__(self, cache: HashCache) -> None:
        self.cache = cache
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, files: Iterable[Path]) -> None:
        """Hash every file that is not cached yet, in the background."""
        self.stop()
        pending = [f for f in files if self.cache.get(f) is None]
        if not pending:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(pending,), name="sdrest-hash", daemon=True
        )
        self._thread.start()

    def _run(self, files: list[Path]) -> None:
        for file in files:
            if self._stop.is_set():
                return
            try:
                self.cache.compute(file)
            except OSError as exc:
                logger.warning("cannot hash %s: %s", file, exc)

    def stop(self) -> None:
        """Stop after the file being hashed now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def join(self, timeout: float | None = None) -> None:
        """Wait for the current batch (tests)."""
        if self._thread is not None:
            self._thread.join(timeout)
