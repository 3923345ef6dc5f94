"""``scripts/bench --peer``'s helpers without building anything: where the peer's source is found,
how it is configured, that a built peer is reused, and the arithmetic of the table."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # bench_peer imports peer_build by name
    spec.loader.exec_module(module)
    return module


_script("bench_http")
peer_build = _script("peer_build")
bench_peer = _script("bench_peer")


def _vendored(root: Path) -> Path:
    tree = root / "vendor" / "stable-diffusion.cpp"
    (tree / "examples" / "server").mkdir(parents=True)
    (tree / "CMakeLists.txt").write_text("project(stable-diffusion)\n")
    return tree


def test_configure_builds_the_server_example_with_the_bindings_cmake_args() -> None:
    command = peer_build.configure_command(Path("/src"), Path("/build"), "-DSD_CUDA=ON -DX='a b'")
    assert command[:5] == ["cmake", "-S", "/src", "-B", "/build"]
    assert "-DSD_BUILD_EXAMPLES=ON" in command and "-DCMAKE_BUILD_TYPE=Release" in command
    assert command[-2:] == ["-DSD_CUDA=ON", "-DX=a b"]
    build = peer_build.build_command(Path("/build"), 2)
    assert build[:3] == ["nice", "-n", "10"] and "sd-server" in build


def test_the_source_is_found_in_uvs_sdist_cache(tmp_path: Path) -> None:
    entry = tmp_path / "sdists-v11" / "pypi" / "stable-diffusion-cpp-python" / "0.4.7" / "Ab12"
    tree = _vendored(entry / "src")
    _vendored(
        tmp_path / "sdists-v11" / "pypi" / "stable-diffusion-cpp-python" / "0.4.6" / "x" / "src"
    )
    assert peer_build.uv_cached_sources("0.4.7", tmp_path) == [tree]
    assert peer_build.uv_cached_sources("0.4.8", tmp_path) == []


def test_an_sdist_unpacks_to_its_vendored_tree(tmp_path: Path) -> None:
    archive = tmp_path / "stable_diffusion_cpp_python-0.4.7.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"project(stable-diffusion)\n"
        info = tarfile.TarInfo(
            "stable_diffusion_cpp_python-0.4.7/vendor/stable-diffusion.cpp/CMakeLists.txt"
        )
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tree = peer_build.extract_vendored(archive, tmp_path / "out")
    assert (tree / "CMakeLists.txt").read_bytes() == data
    assert tree.parts[-2:] == ("vendor", "stable-diffusion.cpp")


def test_a_built_peer_is_reused_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = peer_build.peer_binary(tmp_path, "0.4.7")
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"")
    monkeypatch.setattr(peer_build.subprocess, "run", _no_build)
    assert peer_build.ensure_peer("0.4.7", tmp_path) == binary


def _no_build(*args: object, **kwargs: object) -> None:
    raise AssertionError("nothing may be built")


def test_the_table_and_its_arithmetic() -> None:
    # 256 px in 1.0 s, 512 px in 2.5 s: 1.5 s for 0.1875 extra megapixels.
    assert bench_peer.ms_per_megapixel((256, 1.0), (512, 2.5)) == pytest.approx(8000.0)
    rows = [
        bench_peer.Row("64x64", 90.0, 100.0, "ms"),
        bench_peer.Row("queue", 960.0, 1000.0, "ms", goal=0.95),
    ]
    lines = bench_peer.table(rows)
    assert lines[0] == "| request | sdrest | sd-server | ratio |"
    assert lines[2] == "| 64x64 | 90.0 ms | 100.0 ms | 0.90 |"
    assert lines[3].endswith("| 0.96 (goal <= 0.95) |")  # a missed goal is marked
    assert bench_peer.p99([float(i) for i in range(1, 101)]) == pytest.approx(99.01)
