"""The web UI's static side: served at /ui/, every module it imports ships, every API path it
names reaches a real route, the bodies it sends are accepted, every control has a name, and the
first load stays small. (The browser tests in tests/native/test_web_ui_browser.py click through
it on the real library.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from sdrest.web import STATIC_DIR
from tests.api.support import all_routes

MODULES = {path.name: path.read_text() for path in sorted(STATIC_DIR.glob("*.js"))}
SCRIPTS = "\n".join(MODULES.values())
INDEX = (STATIC_DIR / "index.html").read_text()
# String literals in the modules that name a server path ("/api/...", "/v1/...", "/sdcpp/v1/...").
CALLED = sorted(
    set(re.findall(r"[\"`](/(?:api|v1|sdcpp)/[A-Za-z0-9_/]*[A-Za-z0-9_])[\"`/?]", SCRIPTS))
)
FIRST_LOAD_BUDGET = 300 * 1024


async def test_ui_is_served_as_es_modules(client: httpx.AsyncClient) -> None:
    index = await client.get("/ui/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert '<script type="module" src="app.js">' in index.text
    for name in MODULES:
        script = await client.get(f"/ui/{name}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"], name
    root = await client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/ui/"


def test_every_imported_module_ships() -> None:
    imported = set(re.findall(r"from \"\./([\w-]+\.js)\"", SCRIPTS))
    assert imported and imported <= set(MODULES), imported - set(MODULES)
    assert set(MODULES) - imported == {"app.js"}  # the entry point; nothing unused ships


def test_first_load_is_small() -> None:
    total = len(INDEX.encode()) + len((STATIC_DIR / "style.css").read_bytes())
    total += sum(len(text.encode()) for text in MODULES.values())
    assert total < FIRST_LOAD_BUDGET, total


def test_nothing_leaves_the_origin() -> None:
    """Fully offline: no absolute URL to another host in the page or its modules."""
    assert not re.search(r"(src|href)=\"(https?:)?//", INDEX)
    assert not re.search(r"fetch\(\s*[\"`]https?://", SCRIPTS)
    assert "import(" not in SCRIPTS and "http://" not in SCRIPTS and "https://" not in SCRIPTS


class _Controls(HTMLParser):
    """Form controls that are neither named (aria-label, a wrapping or a ``for`` label) nor
    hidden, and buttons without text or aria-label."""

    def __init__(self) -> None:
        super().__init__()
        self.labels = 0
        self.label_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.inside: list[dict[str, str | None]] = []
        self.button: dict[str, str | None] | None = None
        self.unnamed_buttons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label":
            self.labels += 1
            if found.get("for"):
                self.label_for.add(str(found["for"]))
        elif tag in ("input", "select", "textarea"):
            if found.get("type") != "hidden" and "hidden" not in found:
                found["labelled"] = "yes" if self.labels or found.get("aria-label") else None
                self.controls.append(found)
        elif tag == "button":
            self.button = {**found, "text": ""}

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.labels -= 1
        elif tag == "button" and self.button is not None:
            if not (self.button["text"] or "").strip() and not self.button.get("aria-label"):
                self.unnamed_buttons.append(str(self.button.get("id")))
            self.button = None

    def handle_data(self, data: str) -> None:
        if self.button is not None:
            self.button["text"] = (self.button["text"] or "") + data


def test_every_control_has_a_name() -> None:
    parser = _Controls()
    parser.feed(INDEX)
    unnamed = [
        c for c in parser.controls if not c["labelled"] and c.get("id") not in parser.label_for
    ]
    assert len(parser.controls) > 30 and not unnamed, unnamed
    assert not parser.unnamed_buttons
    # Buttons the modules make carry a visible text or an aria-label naming what they act on.
    assert SCRIPTS.count('"aria-label": `') >= 8


def test_the_ui_calls_the_paths_we_expect() -> None:
    for path in (
        "/sdcpp/v1/img_gen",
        "/api/queue/status",
        "/api/queue/history",
        "/api/queue/cancel",
        "/api/models/download",
        "/api/generate/upscale",
        "/api/models/convert",
        "/api/users",
        "/api/auth/keys",
        "/api/auth/password",
        "/api/system",
    ):
        assert path in CALLED, path


def _route_patterns() -> list[re.Pattern[str]]:
    return [
        re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$")
        for _, path in all_routes()
    ]


@pytest.mark.parametrize("path", CALLED)
def test_every_path_the_ui_calls_is_routed(path: str) -> None:
    """Each path names a real route (a path that ends where an id follows matches the
    parameterised route: ``/api/queue/job/`` + id)."""
    patterns = _route_patterns()
    candidates = [path, path.rstrip("/") + "/x", path.rstrip("/") + "/x/load"]
    assert any(p.match(c) for p in patterns for c in candidates), path


async def test_the_ui_generate_body_is_accepted(client: httpx.AsyncClient) -> None:
    """The body generate.js builds, with every optional part (a LoRA, the hires fix)."""
    body = {
        "prompt": "a lovely cat",
        "negative_prompt": "",
        "width": 512,
        "height": 512,
        "batch_count": 1,
        "seed": -1,
        "sample_params": {
            "sample_steps": 20,
            "guidance": {"txt_cfg": 7},
            "sample_method": "euler",
            "scheduler": "karras",
        },
        "model": "tiny",
        "hires": {
            "enabled": True,
            "scale": 2,
            "steps": 0,
            "denoising_strength": 0.7,
            "upscaler": "latent",
            "upscaler_model": "",
        },
    }
    created = await client.post("/sdcpp/v1/img_gen", json=body)
    assert created.status_code == 202, created.text
    status = await client.get("/api/queue/status")
    job = next(j for j in status.json()["queue"]["jobs"] if j["id"] == created.json()["id"])
    assert job["parameters"]["hires_scale"] == 2
