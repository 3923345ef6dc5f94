"""Build stable-diffusion.cpp's own ``sd-server`` once, from the binding's source distribution.

``scripts/bench --peer`` measures sdrest against the C++ server built from the very source the
installed ``stable-diffusion-cpp-python`` vendors (same library version, same compiler flags:
``CMAKE_ARGS`` is passed on as it is to the binding's build). The build lives outside the
repository, in ``$SDREST_PEER_CACHE`` (default ``~/.cache/sdrest/peer``), one folder per binding
version; nothing of it is ever committed. The source comes from uv's cache of the sdist when it is
there, else ``pip download --no-binary :all:`` fetches it from the package index.
"""

from __future__ import annotations

import glob
import importlib.metadata
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

logger = logging.getLogger("bench.peer")

PACKAGE = "stable-diffusion-cpp-python"
VENDORED = Path("vendor") / "stable-diffusion.cpp"
"""Where the sdist keeps the C++ project (its CMake option ``SD_BUILD_EXAMPLES`` builds the
``sd-server`` example)."""


def binding_version() -> str:
    """The installed binding's version: the peer is built from the same one."""
    return importlib.metadata.version(PACKAGE)


def peer_home() -> Path:
    """The cache folder for peer builds (outside the repository)."""
    configured = os.environ.get("SDREST_PEER_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/sdrest/peer"


def peer_binary(home: Path, version: str) -> Path:
    """Where the built ``sd-server`` of ``version`` lies."""
    return home / version / "build" / "bin" / "sd-server"


def uv_cached_sources(version: str, uv_cache: Path) -> list[Path]:
    """The vendored C++ trees of ``version`` in uv's sdist cache (any cache layout version)."""
    pattern = str(uv_cache / "sdists-v*" / "pypi" / PACKAGE / version / "*" / "src" / VENDORED)
    return [Path(p) for p in sorted(glob.glob(pattern)) if (Path(p) / "CMakeLists.txt").is_file()]


def uv_cache_dir() -> Path:
    """uv's cache folder (``UV_CACHE_DIR``, else the XDG default)."""
    configured = os.environ.get("UV_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "uv"


def extract_vendored(archive: Path, dest: Path) -> Path:
    """Unpack an sdist (``.tar.gz``) into ``dest``; the path of its vendored C++ tree."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    roots = [p for p in dest.iterdir() if (p / VENDORED / "CMakeLists.txt").is_file()]
    if len(roots) != 1:
        raise RuntimeError(f"{archive.name}: no single {VENDORED} inside")
    return roots[0] / VENDORED


def download_sdist(version: str, dest: Path) -> Path:
    """Fetch the sdist of ``version`` from the package index (pip, source only)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--dest",
            str(dest),
            f"{PACKAGE}=={version}",
        ],
        check=True,
    )
    archives = sorted(dest.glob("*.tar.gz"))
    if not archives:
        raise RuntimeError(f"pip download left no sdist of {PACKAGE}=={version} in {dest}")
    return archives[0]


def configure_command(source: Path, build: Path, cmake_args: str = "") -> list[str]:
    """CMake's configure step for the server only: a release build of the library and the
    examples (``SD_BUILD_EXAMPLES``), without the optional WebP/WebM image codecs and the web
    frontend (neither is on the measured path), plus the binding's own ``CMAKE_ARGS``."""
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    return [
        "cmake", "-S", str(source), "-B", str(build), *generator,
        "-DCMAKE_BUILD_TYPE=Release", "-DSD_BUILD_EXAMPLES=ON", "-DSD_WEBP=OFF", "-DSD_WEBM=OFF",
        "-DSD_SERVER_BUILD_FRONTEND=OFF", *shlex.split(cmake_args),
    ]  # fmt: skip


def build_command(build: Path, jobs: int) -> list[str]:
    """Build just the ``sd-server`` target, at low priority (the machine may be shared)."""
    return ["nice", "-n", "10", "cmake", "--build", str(build), "--target", "sd-server",
            "--parallel", str(jobs)]  # fmt: skip


def _source_tree(version: str, folder: Path) -> Path:
    """The vendored tree copied under ``folder``: from uv's cache, else a fresh download."""
    tree = folder / "stable-diffusion.cpp"
    if (tree / "CMakeLists.txt").is_file():
        return tree
    cached = uv_cached_sources(version, uv_cache_dir())
    if cached:
        logger.info("peer source: %s (uv's cache)", cached[0])
        shutil.copytree(cached[0], tree, symlinks=True)
        return tree
    logger.info("peer source: downloading the %s %s sdist", PACKAGE, version)
    unpacked = extract_vendored(download_sdist(version, folder / "sdist"), folder / "sdist")
    shutil.move(unpacked, tree)
    return tree


def ensure_peer(version: str | None = None, home: Path | None = None) -> Path:
    """The ``sd-server`` built from the installed binding's source: built once (several minutes
    on 2 cores), reused afterwards. The build's output goes to ``build.log`` beside it."""
    version = version or binding_version()
    home = home or peer_home()
    binary = peer_binary(home, version)
    if binary.is_file():
        return binary
    folder = home / version
    folder.mkdir(parents=True, exist_ok=True)
    tree = _source_tree(version, folder)
    build = folder / "build"
    log_path = folder / "build.log"
    logger.info("building sd-server %s in %s (log: %s) ...", version, build, log_path)
    started = time.perf_counter()
    with log_path.open("ab") as log:
        cmake_args = os.environ.get("CMAKE_ARGS", "")
        for command in (
            configure_command(tree, build, cmake_args),
            build_command(build, os.cpu_count() or 2),
        ):
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"peer build failed: {shlex.join(command)} (see {log_path})")
    logger.info("sd-server built in %.0f s", time.perf_counter() - started)
    return binary


def main() -> int:
    """Build (or find) the peer and print its path."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("%s", ensure_peer())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
