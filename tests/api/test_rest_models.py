"""/api/models/*: listing with filters, sort and pages; lookups by name or hash; load/unload;
refresh; stats; batch; validate; hash; convert (501 until the engine can)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from tests.api.support import ADMIN, ALICE, ANONYMOUS, assert_error
from tests.fakes import FakeEngine, write_fake_checkpoint, write_safetensors_header


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    write_safetensors_header(  # a checkpoint whose bytes (and hash) differ from tiny's
        models_dir / "checkpoints" / "alpha.safetensors",
        [
            "model.diffusion_model.double_stream_modulation_img.lin.weight",
            "model.diffusion_model.single_blocks.0.linear1.weight",
            "first_stage_model.decoder.conv_in.weight",
            "text_encoders.llm.model.embed_tokens.weight",
            "model.diffusion_model.extra.weight",
        ],
    )
    write_safetensors_header(
        models_dir / "vae" / "big-vae.safetensors", [f"t{i}" for i in range(50)]
    )
    write_safetensors_header(
        models_dir / "esrgan" / "x2.safetensors",
        [
            "conv_first.weight",
            "conv_body.weight",
            "conv_up1.weight",
            "conv_hr.weight",
            "conv_last.weight",
        ],
    )
    (models_dir / "checkpoints" / "broken.safetensors").write_bytes(b"\x05not a model")
    os.utime(models_dir / "checkpoints" / "alpha.safetensors", (1_000_000, 1_000_000))
    config = tmp_path / "sdrest.toml"
    config.write_text('[presets.combo]\nmodel = "tiny"\nvae = "big-vae"\n')
    return load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data"),
            "output_dir": str(tmp_path / "outputs"),
            "model": "tiny",
            "preload": False,  # the listing's "loaded" starts False
        },
        env={},
        config_file=config,
    )


async def _names(api: httpx.AsyncClient, query: str = "") -> list[str]:
    r = await api.get(f"/api/models{query}")
    assert r.status_code == 200, r.text
    return [m["name"] for m in r.json()["models"]]


async def test_listing_shape_and_filters(api: httpx.AsyncClient, service: SdrestService) -> None:
    r = await api.get("/api/models")
    body = r.json()
    assert body["pagination"]["total_count"] == 7 and body["total"] == 7
    by_name = {m["name"]: m for m in body["models"]}
    tiny = by_name["tiny"]
    assert tiny["type"] == "checkpoint" and tiny["path"] == "checkpoints/tiny.safetensors"
    assert tiny["architecture"] == "flux2" and tiny["format"] == "safetensors"
    assert tiny["loaded"] is False and tiny["valid"] is True and tiny["id"] == "tiny"
    assert by_name["broken"]["valid"] is False and by_name["broken"]["error"]
    combo = by_name["combo"]
    assert combo["type"] == "preset" and combo["components"]["vae"] == "vae/big-vae.safetensors"
    assert await _names(api, "?type=esrgan") == ["x2"]  # the spec's name for upscalers
    assert await _names(api, "?type=vae") == ["big-vae"]
    assert await _names(api, "?search=ALP") == ["alpha"]
    assert await _names(api, "?search=vae") == ["big-vae"]


async def test_sort_and_pages(api: httpx.AsyncClient, service: SdrestService) -> None:
    assert await _names(api, "?sort_by=name") == sorted(await _names(api), key=str.lower)
    sizes = await _names(api, "?sort_by=size&sort_order=desc&type=checkpoint")
    assert sizes == ["alpha", "tiny", "broken"]
    assert (await _names(api, "?sort_by=date&type=checkpoint"))[0] == "alpha"
    pages = [await _names(api, f"?limit=3&page={p}") for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [name for page in pages for name in page] == await _names(api, "?limit=0")
    r = (await api.get("/api/models?limit=3&page=3")).json()["pagination"]
    assert r == {
        "page": 3,
        "limit": 3,
        "total_count": 7,
        "total_pages": 3,
        "has_next": False,
        "has_prev": True,
    }
    await service.models.load("alpha")
    assert (await _names(api, "?sort_by=loaded"))[0] == "alpha"
    assert await _names(api, "?loaded=true") == ["alpha"]
    for bad in (
        "sort_by=colour",
        "sort_order=up",
        "limit=-1",
        "limit=x",
        "page=0",
        "loaded=perhaps",
    ):
        assert_error(await api.get(f"/api/models?{bad}"), 400, "INVALID_PARAMETERS")


async def test_get_model_by_name_file_name_and_hash(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    digest = hashlib.sha256(
        (service.registry.models_dir / "checkpoints" / "tiny.safetensors").read_bytes()
    ).hexdigest()
    service.registry.hashes.compute(
        service.registry.models_dir / "checkpoints" / "tiny.safetensors"
    )
    for model_id in ("tiny", "tiny.safetensors", digest, digest[:10]):
        r = await api.get(f"/api/models/{model_id}")
        assert r.status_code == 200, (model_id, r.text)
        model = r.json()["model"]
        assert (
            model["name"] == "tiny"
            and model["sha256"] == digest
            and model["short_hash"] == digest[:10]
        )
    assert (await api.get("/api/models/combo")).json()["model"]["type"] == "preset"
    assert_error(await api.get("/api/models/nope"), 404, "MODEL_NOT_FOUND")
    assert_error(await api.get("/api/models/0123456789"), 404, "MODEL_NOT_FOUND")
    assert_error(await api.get("/api/models/..%2f..%2fetc%2fpasswd"), 404, "NOT_FOUND")
    assert_error(await api.get("/api/models", headers=ANONYMOUS), 401, "AUTH_REQUIRED")


async def test_load_and_unload(api: httpx.AsyncClient, service: SdrestService) -> None:
    assert_error(
        await api.post("/api/models/alpha/load", headers=ALICE), 403, "INSUFFICIENT_PERMISSIONS"
    )
    r = await api.post("/api/models/alpha/load", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {
        "message": "Model loaded successfully",
        "model": "alpha",
    }
    assert service.models.last_loaded == "alpha" and service.models.default() == "alpha"
    assert (await api.get("/api/models/alpha")).json()["model"]["loaded"] is True
    assert_error(await api.post("/api/models/big-vae/load"), 400, "INVALID_PARAMETERS")
    assert_error(await api.post("/api/models/nope/load"), 404, "MODEL_NOT_FOUND")
    assert_error(await api.post("/api/models/tiny/unload"), 409, "MODEL_NOT_LOADED")
    r = await api.post("/api/models/alpha/unload")
    assert r.json() == {"message": "Model unloaded successfully", "model": "alpha"}
    assert service.models.last_loaded is None
    r = await api.post("/api/models/combo/load")
    assert r.status_code == 200 and service.models.last_loaded == "combo"


async def test_types_directories_stats(api: httpx.AsyncClient, service: SdrestService) -> None:
    types = (await api.get("/api/models/types")).json()
    assert {"checkpoint", "vae", "lora", "esrgan", "preset"} <= set(types["types"])
    upscaler = next(d for d in types["details"] if d["type"] == "esrgan")  # the spec's name
    assert "esrgan" in upscaler["folders"] and upscaler["count"] == 1
    dirs = (await api.get("/api/models/directories", headers=ALICE)).json()
    assert "models_dir" not in dirs
    checkpoints = next(d for d in dirs["directories"] if d["name"] == "checkpoints")
    assert checkpoints == {"name": "checkpoints", "type": "checkpoint", "exists": True, "files": 3}
    assert next(d for d in dirs["directories"] if d["name"] == "taesd")["exists"] is False
    assert "models_dir" in (await api.get("/api/models/directories", headers=ADMIN)).json()
    stats = (await api.get("/api/models/stats")).json()
    assert stats["total_models"] == 7 and stats["total_files"] == 6
    assert stats["by_type"]["checkpoint"]["count"] == 3 and stats["invalid"] == 1
    assert stats["total_size"] == sum(e.size for e in service.registry.entries())


async def test_refresh_counts_new_and_removed(
    api: httpx.AsyncClient, service: SdrestService
) -> None:
    root = service.registry.models_dir
    write_fake_checkpoint(root / "checkpoints" / "gamma.safetensors")
    (root / "vae" / "big-vae.safetensors").unlink()
    assert_error(
        await api.post("/api/models/refresh", headers=ALICE), 403, "INSUFFICIENT_PERMISSIONS"
    )
    r = await api.post("/api/models/refresh")
    assert r.json() == {
        "message": "Model refresh completed",
        "models_found": 6,
        "models_updated": 1,
        "models_removed": 1,
    }


async def test_validate(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/models/validate", json={"path": "checkpoints/tiny.safetensors"})
    body = r.json()
    assert (
        body["valid"] is True and body["architecture"] == "flux2" and body["role"] == "checkpoint"
    )
    assert body["tensor_count"] == 4 and body["path"] == "checkpoints/tiny.safetensors"
    body = (await api.post("/api/models/validate", json={"model_name": "broken"})).json()
    assert body["valid"] is False and body["errors"]
    for bad in ("../outside.safetensors", "/etc/passwd", "checkpoints/../../x"):
        r = await api.post("/api/models/validate", json={"path": bad})
        assert_error(r, 400, "INVALID_PARAMETERS")
    assert_error(
        await api.post("/api/models/validate", json={"path": "nope.gguf"}), 404, "MODEL_NOT_FOUND"
    )
    assert_error(await api.post("/api/models/validate", json={}), 400, "INVALID_PARAMETERS")
    assert_error(await api.post("/api/models/validate", json={"path": 3}), 400, "VALIDATION_ERROR")


async def test_hash(api: httpx.AsyncClient, service: SdrestService) -> None:
    path = service.registry.models_dir / "vae" / "big-vae.safetensors"
    r = await api.post("/api/models/hash", json={"models": ["big-vae"], "model_name": "x2"})
    assert r.status_code == 200, r.text
    hashes = r.json()["hashes"]
    assert hashes[0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [h["model"] for h in hashes] == ["big-vae", "x2"]
    assert_error(
        await api.post("/api/models/hash", json={"models": ["combo"]}), 400, "INVALID_PARAMETERS"
    )
    assert_error(await api.post("/api/models/hash", json={"models": []}), 400, "VALIDATION_ERROR")
    assert_error(
        await api.post("/api/models/hash", json={"models": ["ghost"]}), 404, "MODEL_NOT_FOUND"
    )


async def test_batch(api: httpx.AsyncClient, service: SdrestService) -> None:
    r = await api.post(
        "/api/models/batch", json={"operation": "validate", "models": ["tiny", "broken", "ghost"]}
    )
    body = r.json()
    assert [x["success"] for x in body["results"]] == [True, False, False]
    assert body["results"][2]["error"]["code"] == "MODEL_NOT_FOUND"
    assert (body["succeeded"], body["failed"]) == (1, 2)
    r = await api.post("/api/models/batch", json={"operation": "load", "models": ["tiny"]})
    assert r.json()["results"][0]["success"] and service.models.last_loaded == "tiny"
    r = await api.post("/api/models/batch", json={"operation": "load", "models": ["tiny", "alpha"]})
    assert_error(r, 400, "INVALID_PARAMETERS")
    r = await api.post("/api/models/batch", json={"operation": "explode", "models": ["tiny"]})
    assert_error(r, 400, "VALIDATION_ERROR")


async def test_convert_refuses_bad_input(api: httpx.AsyncClient) -> None:
    good = {"model_name": "tiny", "quantization_type": "q8_0", "output_path": "checkpoints/t.gguf"}
    for bad in (
        {**good, "quantization_type": "q9"},
        {**good, "output_path": "../t.gguf"},
        {**good, "output_path": "/tmp/t.gguf"},
        {**good, "output_path": "t.txt"},
        {**good, "model_name": "combo"},
    ):
        assert_error(await api.post("/api/models/convert", json=bad), 400, "INVALID_PARAMETERS")
    assert_error(
        await api.post("/api/models/convert", json={**good, "model_name": "ghost"}),
        404,
        "MODEL_NOT_FOUND",
    )
    assert_error(
        await api.post("/api/models/convert", json=good, headers=ALICE),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )


async def test_convert_is_a_queued_job(
    api: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    body = {"model_name": "tiny", "quantization_type": "Q4_0"}
    r = await api.post("/api/models/convert", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["output_path"] == "checkpoints/tiny.q4_0.gguf"
    job = await service.wait(r.json()["request_id"], timeout=10)
    assert job.kind == "convert" and job.status == "completed", job.error
    assert job.result is not None and job.result.files == ["checkpoints/tiny.q4_0.gguf"]
    assert [Path(p.output_path).name for p in fake_engine.converted] == ["tiny.q4_0.gguf"]
    assert "tiny.q4_0" in await _names(api, "?type=checkpoint")
    view = await api.get(f"/api/queue/job/{job.id}")
    assert view.status_code == 200, view.text
    assert view.json()["job"]["type"] == "convert"
    assert view.json()["job"]["model_files"] == ["checkpoints/tiny.q4_0.gguf"]
    assert_error(await api.post("/api/models/convert", json=body), 409, "CONFLICT")
