"""A local stand-in for the Hugging Face hub: what ``huggingface_hub`` calls to list and download.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.url`. It serves

- ``GET /api/models/{owner}/{name}/tree/{revision}``: the file listing (``list_repo_tree``), LFS
  entries with their SHA-256;
- ``HEAD /{owner}/{name}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag`` (the SHA-256
  for LFS files, the hub's convention) and ``Content-Length``;
- ``GET`` of the same: the bytes, with ``Range: bytes=N-`` answered by a 206.

Faults on demand: :attr:`drop_once` (send half the file, then close the connection: the client
must resume with a Range request), :attr:`corrupt` (bytes that differ from the announced
checksum), :attr:`fail` (a 500 on the download). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import numpy as np
from safetensors.numpy import save_file

from sdrest.models.paths import MODEL_SUFFIXES
from sdrest.testing import write_esrgan, write_flux2_klein
from tests.fakes import write_safetensors_header

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class Seen:
    """One request the hub answered."""

    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    """Repositories (``owner/name`` -> path -> bytes) served over HTTP on 127.0.0.1."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)
    gate: threading.Event | None = None
    """When set: file downloads wait for it (a download that takes as long as a test wants)."""
    requests: list[Seen] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def add(self, repo: str, path: str, data: bytes) -> None:
        """Put a file in a repository (created on first use)."""
        self.repos.setdefault(repo, {})[path] = data

    def downloads(self, path: str) -> list[Seen]:
        """The GET requests for one file (``path`` in its repository)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + path)
        ]

    def start(self) -> str:
        """Serve in a thread; returns the endpoint URL."""
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _is_lfs(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in MODEL_SUFFIXES


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def _record(self) -> None:
        self.fake.requests.append(
            Seen(
                self.command,
                unquote(urlsplit(self.path).path),
                self.headers.get("Range"),
                self.headers.get("Authorization"),
            )
        )

    def _error(self, status: int, code: str = "") -> None:
        body = json.dumps({"error": code or "error"}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        """The tree listing or a file."""
        self._record()
        parts = unquote(urlsplit(self.path).path).strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            self._tree("/".join(parts[2:4]))
        else:
            self._file(parts, body=True)

    def do_HEAD(self) -> None:
        """A file's metadata."""
        self._record()
        self._file(unquote(urlsplit(self.path).path).strip("/").split("/"), body=False)

    def _tree(self, repo: str) -> None:
        files = self.fake.repos.get(repo)
        if files is None:
            self._error(404, "RepoNotFound")
            return
        listing = []
        for path, data in sorted(files.items()):
            entry: dict[str, object] = {
                "type": "file",
                "oid": hashlib.sha1(data).hexdigest(),
                "size": len(data),
                "path": path,
            }
            if _is_lfs(path):
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            listing.append(entry)
        body = json.dumps(listing).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _lookup(self, parts: list[str]) -> tuple[str, bytes] | None:
        """(path in the repository, bytes) of a ``resolve`` URL; None: a 404 was sent."""
        if len(parts) < 5 or parts[2] != "resolve":
            self._error(404, "EntryNotFound")
            return None
        repo, path = "/".join(parts[:2]), "/".join(parts[4:])
        files = self.fake.repos.get(repo)
        if files is None or path not in files:
            self._error(404, "RepoNotFound" if files is None else "EntryNotFound")
            return None
        return path, files[path]

    def _file(self, parts: list[str], *, body: bool) -> None:
        found = self._lookup(parts)
        if found is None:
            return
        path, data = found
        sha256 = hashlib.sha256(data).hexdigest()
        if body and self.fake.gate is not None:
            self.fake.gate.wait(30)
        if body and path in self.fake.fail:
            self._error(500)
            return
        if body and path in self.fake.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start = 0
        wanted = self.headers.get("Range")
        if body and wanted and wanted.startswith("bytes="):
            start = int(wanted[len("bytes=") :].split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        etag = sha256 if _is_lfs(path) else hashlib.sha1(data).hexdigest()
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if path in self.fake.drop_once:
            self.fake.drop_once.discard(path)
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data[start:])


def model_files(root: Path) -> dict[str, bytes]:
    """Model files as a hub would hold them: tiny models (``sdrest.testing``) and header-level
    ones, so the header detection that places them is the real one."""
    llm = root / "qwen_3_4b.safetensors"
    rng = np.random.default_rng(0)
    save_file(
        {
            "model.embed_tokens.weight": rng.standard_normal((64, 32)).astype(np.float16),
            "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((32, 32)).astype(
                np.float16
            ),
        },
        str(llm),
    )
    files = {
        "upscaler.safetensors": write_esrgan(root / "upscaler.safetensors"),
        "dit.safetensors": write_flux2_klein(
            root / "dit.safetensors", variant="for_taesd", quant="f16"
        ),
        "ae.safetensors": write_safetensors_header(
            root / "ae.safetensors", ["decoder.conv_in.weight", "encoder.conv_in.weight"]
        ),
        "llm.safetensors": llm,
    }
    return {name: path.read_bytes() for name, path in files.items()}


def add_family(hub: FakeHub, weights: dict[str, bytes], repo: str = "acme/klein-mini") -> None:
    """A Flux.2-klein repository laid out like Comfy-Org's: diffusion model, VAE, text encoder."""
    hub.add(repo, "split_files/diffusion_models/klein_mini.safetensors", weights["dit.safetensors"])
    hub.add(repo, "split_files/vae/flux2-vae.safetensors", weights["ae.safetensors"])
    hub.add(repo, "split_files/text_encoders/qwen_3_4b.safetensors", weights["llm.safetensors"])
    hub.add(repo, "README.md", b"# klein mini\n")
