"""The web UI in a real headless Chromium against a real server on the real library (jwt auth,
the synthesized tiny models): each page's main flow, as a person would click through it.

One server and one browser serve the whole module; the admin's page is signed in once and the
tests run in file order (each builds on what the last one made: the gallery shows what was
generated). Screenshots of every page at desktop (1280) and phone (390) widths land in
``test-artifacts/ui/``. Chromium comes from Debian (scripts/test installs it when it can).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from sdrest.testing import TinyModelSet
from tests.api.support import PASSWORDS, add_accounts
from tests.conftest import settings_in
from tests.live import LiveServer, live_server

pytestmark = [pytest.mark.native, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without these, Chromium keeps trying to reach Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
PAGES = ("generate", "queue", "gallery", "models", "users", "server")
DONE = 60_000  # ms: a tiny generation takes well under a second, a cold worker a few


class ConsoleWatch:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(msg.text) if msg.type == "error" else None,
        )

    def take(self) -> list[str]:
        found, self.errors[:] = list(self.errors), []
        return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        reason = "chromium is not installed (scripts/test installs it when it can)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI runs the browser tests, it does not skip them")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelSet
) -> Iterator[LiveServer]:
    # A copy of the models: quantizing writes a new model file, which other modules must not see.
    root = tmp_path_factory.mktemp("ui")
    models = shutil.copytree(tiny_models.root, root / "models")
    (models / "prompts").mkdir()
    (models / "prompts" / "portrait.txt").write_text("a portrait of {prompt}, studio light\n")
    (models / "neg_prompts").mkdir()
    (models / "neg_prompts" / "clean.txt").write_text("blurry, low quality\n")
    settings = settings_in(
        root,
        models,
        model="tiny-flux2",
        threads=2,
        auth_mode="jwt",
        auth_failure_delay=0.0,
    )
    add_accounts(settings)
    with live_server(settings) as live:
        yield live


def new_page(browser: Browser, width: int = 1280) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    return context, context.new_page()


def sign_in(page: Page, name: str, password: str) -> None:
    form = page.locator("#signin-form")
    form.get_by_label("Username").fill(name)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def admin(browser: Browser, server: LiveServer) -> Iterator[tuple[Page, ConsoleWatch]]:
    """The admin's page, signed in (after one wrong password, said in words)."""
    context, page = new_page(browser)
    watch = ConsoleWatch(page)
    page.goto(server.url + "/")  # redirects to /ui/
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "signin-1280.png"))
    sign_in(page, "root", "wrong password")
    expect(page.locator("#signin-error")).to_contain_text("invalid username or password")
    watch.take()  # the refused login's 401 is the point of that step
    sign_in(page, "root", PASSWORDS["root"])
    expect(page.locator("body[data-ready=yes]")).to_have_count(1)
    expect(page.get_by_role("combobox", name="Model")).to_contain_text("tiny-flux2")
    yield page, watch
    context.close()


def png(width: int = 64, height: int = 64, colour: tuple[int, int, int] = (30, 120, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def small_settings(page: Page, prompt: str, steps: int = 2, size: int = 64) -> None:
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Width", exact=True).fill(str(size))
    page.get_by_label("Height", exact=True).fill(str(size))
    page.get_by_label("Steps", exact=True).fill(str(steps))
    page.get_by_label("CFG scale", exact=True).fill("1")


def api_jobs(server: LiveServer, name: str) -> list[dict[str, object]]:
    token = httpx.post(
        server.url + "/api/auth/login",
        json={"username": name, "password": PASSWORDS.get(name, "carol-password")},
    ).json()["token"]
    answer = httpx.get(
        server.url + "/api/queue/status", headers={"Authorization": f"Bearer {token}"}
    )
    jobs: list[dict[str, object]] = answer.json()["queue"]["jobs"]
    return jobs


def test_prompt_templates_from_the_models_folder(admin: tuple[Page, ConsoleWatch]) -> None:
    page, watch = admin
    page.get_by_label("Prompt", exact=True).fill("a cat")
    page.get_by_label("Prompt template").select_option(label="portrait")
    prompt = page.get_by_label("Prompt", exact=True)
    expect(prompt).to_have_value("a portrait of a cat, studio light")
    page.get_by_label("Prompt template").select_option(label="clean")
    expect(page.get_by_label("Negative prompt")).to_have_value("blurry, low quality")
    page.get_by_label("Negative prompt").fill("")
    assert not watch.take()


def test_generate_with_a_lora_shows_it_in_the_job(
    admin: tuple[Page, ConsoleWatch], server: LiveServer
) -> None:
    page, watch = admin
    small_settings(page, "a lovely cat with a lora")
    page.get_by_label("LoRA", exact=True).select_option("tiny-lora")
    page.get_by_role("button", name="Add LoRA").click()
    page.get_by_label("Weight of tiny-lora").fill("0.6")
    page.get_by_text("Hires fix", exact=True).click()  # opens the section
    page.get_by_label("Hires fix: sample again at a larger size").check()
    page.get_by_label("Prompt", exact=True).press("Control+Enter")  # the keyboard way
    result = page.locator("#results img").first
    expect(result).to_be_visible(timeout=DONE)
    assert result.evaluate("img => img.decode().then(() => img.naturalWidth)") == 128  # hires 2x
    job = next(j for j in api_jobs(server, "root") if j["prompt"] == "a lovely cat with a lora")
    assert job["parameters"]["lora"] == [{"path": "tiny-lora", "multiplier": 0.6}]  # type: ignore[index]
    # The full view shows it too, with the seed the server chose; "Reuse" puts that seed back.
    page.get_by_role("button", name="Open Result").first.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_contain_text("tiny-lora (0.6)")
    expect(viewer).to_contain_text("Hires fix2\u00d7")
    seed = job["parameters"]["seed"]  # type: ignore[index]
    expect(viewer).to_contain_text(str(seed))
    viewer.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Reuse last seed").click()
    expect(page.get_by_label("Seed", exact=True)).to_have_value(str(seed))
    page.get_by_role("button", name="Random seed").click()
    page.get_by_role("button", name="Remove tiny-lora").click()
    page.get_by_label("Hires fix: sample again at a larger size").uncheck()
    assert page.locator("#gen-error").text_content() == ""
    assert not watch.take()


def test_a_bad_value_is_said_next_to_its_field(admin: tuple[Page, ConsoleWatch]) -> None:
    page, watch = admin
    page.get_by_label("Steps", exact=True).fill("100000")
    page.get_by_role("button", name="Generate").click()
    note = page.locator(".field-error")
    expect(note).to_contain_text("steps")
    assert page.get_by_label("Steps", exact=True).get_attribute("aria-invalid") == "true"
    page.get_by_label("Steps", exact=True).fill("2")
    assert all("400" in line for line in watch.take())  # the browser's own line for the 400


def test_inpainting_with_a_painted_mask(
    admin: tuple[Page, ConsoleWatch], server: LiveServer
) -> None:
    page, watch = admin
    page.get_by_label("Inpaint", exact=True).check()
    small_settings(page, "inpaint a red square")
    page.get_by_label("Input image").set_input_files(
        {"name": "blue.png", "mimeType": "image/png", "buffer": png()}
    )
    canvas = page.get_by_label("Inpainting mask: paint where to repaint")
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None

    def painted(fx: float, fy: float) -> int:
        return int(
            canvas.evaluate(
                "(c, [x, y]) => c.getContext('2d')"
                ".getImageData(x * c.width, y * c.height, 1, 1).data[3]",
                [fx, fy],
            )
        )

    def drag(y: float) -> None:
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * y, steps=8)
        page.mouse.up()

    drag(0.5)
    assert painted(0.5, 0.5) > 0 and painted(0.5, 0.1) == 0
    page.get_by_role("button", name="Invert mask").click()
    assert painted(0.5, 0.5) == 0 and painted(0.5, 0.1) > 0
    page.get_by_role("button", name="Clear mask").click()
    assert painted(0.5, 0.1) == 0
    page.get_by_label("Brush size").fill("40")
    drag(0.3)
    drag(0.6)
    page.get_by_role("button", name="Eraser").click()
    drag(0.6)  # erased again
    page.get_by_role("button", name="Eraser").click()
    assert painted(0.5, 0.3) > 0 and painted(0.5, 0.6) == 0
    before = page.locator("#results img").count()
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#results img")).to_have_count(before + 1, timeout=DONE)
    job = next(j for j in api_jobs(server, "root") if j["prompt"] == "inpaint a red square")
    assert job["status"] == "completed" and job["outputs"], job
    assert not watch.take()


def test_cancel_a_running_job(admin: tuple[Page, ConsoleWatch], server: LiveServer) -> None:
    page, watch = admin
    page.get_by_label("Text to image", exact=True).check()
    small_settings(page, "a job that is cancelled", steps=40, size=256)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#progress-text")).to_contain_text("Step", timeout=DONE)  # sampling now
    # A reload re-attaches to the running job: its progress and live preview come back.
    page.reload()
    expect(page.locator("#progress-text")).to_contain_text("Step", timeout=DONE)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a job that is cancelled")
    expect(page.get_by_role("img", name="Live preview")).to_be_visible(timeout=DONE)
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#gen-error")).to_have_text("Cancelled.", timeout=DONE)
    expect(page.locator("#progress-box")).to_be_hidden()
    job = next(j for j in api_jobs(server, "root") if j["prompt"] == "a job that is cancelled")
    assert job["status"] == "cancelled"
    page.locator("#queue-count").wait_for(state="attached")
    page.goto(server.url + "/ui/#queue")
    row = page.locator("#queue-rows tr", has_text="a job that is cancelled")
    expect(row).to_contain_text("cancelled")
    assert not watch.take()


def test_gallery_sends_an_image_to_img2img(
    admin: tuple[Page, ConsoleWatch], server: LiveServer
) -> None:
    page, watch = admin
    page.get_by_role("link", name="Gallery").click()
    first = page.locator("#gallery-grid button.thumb").first
    expect(first).to_be_visible()
    expect(page.locator("#gallery-count")).to_contain_text("2 images")
    first.click()
    viewer = page.locator("#viewer")
    download = re.compile(r"^/api/queue/job/job_\w+/output/\w+\.png$")
    expect(viewer.get_by_role("link", name="Download")).to_have_attribute("href", download)
    viewer.get_by_role("button", name="Send to img2img").click()
    expect(page.get_by_label("Image to image", exact=True)).to_be_checked()
    preview = page.get_by_role("img", name="Input image")
    expect(preview).to_be_visible()
    assert preview.evaluate("img => img.decode().then(() => img.naturalWidth)") == 64
    page.get_by_label("Prompt", exact=True).fill("img2img from the gallery")
    page.get_by_label("Denoising strength").fill("0.4")
    before = page.locator("#results img").count()
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#results img")).to_have_count(before + 1, timeout=DONE)
    job = next(j for j in api_jobs(server, "root") if j["prompt"] == "img2img from the gallery")
    assert job["parameters"]["strength"] == 0.4  # type: ignore[index]
    assert not watch.take()


def test_upscale_with_esrgan_and_by_resampling(admin: tuple[Page, ConsoleWatch]) -> None:
    page, watch = admin
    page.get_by_role("link", name="Generate").click()
    page.get_by_label("Upscale", exact=True).check()
    page.get_by_label("Input image").set_input_files(
        {"name": "small.png", "mimeType": "image/png", "buffer": png(48, 32)}
    )
    page.get_by_label("Upscaler", exact=True).select_option("tiny-esrgan-x2")
    before = page.locator("#results img").count()
    page.get_by_role("button", name="Upscale").click()  # the Generate button, renamed here
    newest = page.locator("#results img").first
    expect(page.locator("#results img")).to_have_count(before + 1, timeout=DONE)
    expect(newest).to_have_attribute("alt", re.compile("96 \u00d7 64"))  # the model's 2x
    page.get_by_label("Upscaler", exact=True).select_option("resample")
    page.get_by_label("Upscale factor").select_option("1.5")
    page.get_by_role("button", name="Upscale").click()
    expect(page.locator("#results img")).to_have_count(before + 2)
    assert newest.evaluate("img => img.decode().then(() => img.naturalWidth)") == 72
    assert not watch.take()


def test_gallery_deletes_an_image_after_asking(
    admin: tuple[Page, ConsoleWatch], server: LiveServer
) -> None:
    page, watch = admin
    page.get_by_role("link", name="Gallery").click()
    history = httpx.get(
        server.url + "/api/queue/history?status=completed&limit=500",
        headers={"Authorization": "Bearer " + str(page.evaluate("localStorage['sdrest-token']"))},
    ).json()
    before = sum(len(job["outputs"]) for job in history["jobs"])
    count = page.locator("#gallery-count")
    expect(count).to_have_text(f"{before} images")  # every image of the history, loaded
    page.locator("#gallery-grid button.thumb").first.click()  # the newest: one image
    viewer = page.locator("#viewer")
    url = viewer.get_by_role("link", name="Download").get_attribute("href")
    assert url is not None
    page.once("dialog", lambda dialog: dialog.dismiss())  # "Delete this image for good?" - no
    viewer.get_by_role("button", name="Delete").click()
    expect(viewer).to_be_visible()
    assert httpx.get(server.url + url).status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    viewer.get_by_role("button", name="Delete").click()
    expect(page.locator("#toast")).to_contain_text("Image deleted")
    expect(viewer).to_be_hidden()
    expect(count).to_have_text(f"{before - 1} images")
    assert httpx.get(server.url + url).status_code == 404  # the record and the file are gone
    assert not watch.take()


def test_models_page_searches_and_hashes(admin: tuple[Page, ConsoleWatch]) -> None:
    page, watch = admin
    page.get_by_role("link", name="Models").click()
    rows = page.locator("#models-rows tr")
    expect(rows.filter(has_text="tiny-flux2")).to_contain_text("loaded")
    page.get_by_label("Search models").fill("tiny-l")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("tiny-lora")
    page.get_by_role("button", name="Hash tiny-lora").click()
    expect(page.locator("#toast")).to_contain_text("tiny-lora: ")
    page.get_by_label("Search models").fill("")
    expect(rows.filter(has_text="tiny-esrgan-x2")).to_have_count(1)
    page.get_by_role("button", name="Rescan folder").click()
    expect(page.locator("#toast")).to_contain_text("Rescanned")
    # Quantizing is a job: its progress shows in the row, then the new file is listed.
    page.get_by_label("Quantization type for tiny-flux2").select_option("q8_0")
    page.get_by_role("button", name="Quantize tiny-flux2").click()
    expect(rows.filter(has_text="checkpoints/tiny-flux2.gguf")).to_contain_text(
        "quantized: checkpoints/tiny-flux2.q8_0.gguf", timeout=DONE
    )
    expect(page.locator("#models-rows tr[data-model='tiny-flux2.q8_0']")).to_contain_text(
        "checkpoint"
    )
    # The hub download form (admins): a bad repository is said next to its field.
    page.get_by_text("Download from Hugging Face").click()
    form = page.locator("#model-download")
    form.get_by_label("Repository").fill("no-owner")
    form.get_by_role("button", name="Download").click()
    expect(form.locator(".field-error")).to_contain_text("write owner/name")
    expect(form.get_by_label("Repository")).to_have_attribute("aria-invalid", "true")
    assert [line for line in watch.take() if "400" not in line] == []


def test_admin_adds_a_user_who_sees_only_their_own_jobs(
    admin: tuple[Page, ConsoleWatch], browser: Browser, server: LiveServer
) -> None:
    page, watch = admin
    page.get_by_role("link", name="Users").click()
    expect(page.locator("#users-rows tr", has_text="alice")).to_have_count(1)
    form = page.locator("#user-add")
    form.get_by_label("New username").fill("carol")
    form.get_by_label("New user's password").fill("carol-password")
    form.get_by_role("button", name="Add user").click()
    expect(page.locator("#users-rows tr", has_text="carol")).to_have_count(1)
    assert not watch.take()

    context, phone = new_page(browser, 390)
    carol_watch = ConsoleWatch(phone)
    phone.goto(server.url + "/ui/#queue")
    expect(phone.get_by_role("heading", name="Sign in")).to_be_visible()
    phone.screenshot(path=str(ARTIFACTS / "signin-390.png"))
    sign_in(phone, "carol", "carol-password")
    expect(phone.locator("#user")).to_contain_text("carol (user)")
    expect(phone.locator("#queue-rows")).to_contain_text("Nothing here.")
    expect(phone.get_by_role("link", name="Account")).to_be_visible()
    phone.get_by_role("link", name="Generate").click()
    small_settings(phone, "carol's own picture")
    phone.get_by_role("button", name="Generate").click()
    expect(phone.locator("#results img")).to_have_count(1, timeout=DONE)
    phone.get_by_role("link", name="Gallery").click()
    expect(phone.locator("#gallery-count")).to_have_text("1 image")
    phone.get_by_role("link", name="Queue").click()
    expect(phone.locator("#queue-rows tr")).to_have_count(1)
    expect(phone.locator("#queue-rows")).to_contain_text("carol's own picture")
    # Her own keys: made, shown once, listed, revoked.
    phone.get_by_role("link", name="Account").click()
    phone.get_by_label("Name for the new key").fill("phone")
    phone.get_by_role("button", name="Create key").click()
    expect(phone.get_by_label("New API key")).to_have_value(re.compile("^sdr_"))
    phone.get_by_role("button", name="Revoke key phone").click()
    expect(phone.locator("#keys-self")).to_contain_text("revoked")
    assert not carol_watch.take()
    context.close()
    # The admin sees everyone's jobs, carol's included; then makes her an admin, then removes her.
    page.get_by_role("link", name="Queue").click()
    expect(page.locator("#queue-rows")).to_contain_text("carol's own picture")
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Role of carol").select_option("admin")
    expect(page.locator("#toast")).to_contain_text("carol is now admin")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove carol").click()
    expect(page.locator("#users-rows tr", has_text="carol")).to_have_count(0)
    assert not watch.take()


def test_an_expired_session_asks_to_sign_in_and_keeps_the_form(
    admin: tuple[Page, ConsoleWatch], server: LiveServer
) -> None:
    page, watch = admin
    page.get_by_role("link", name="Generate").click()
    page.get_by_label("Text to image", exact=True).check()
    small_settings(page, "typed before the session ended")
    before = page.locator("#results img").count()
    page.evaluate("localStorage.setItem('sdrest-token', 'expired.token.value')")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-note")).to_contain_text("What you typed is kept")
    sign_in(page, "root", PASSWORDS["root"])
    expect(page.get_by_role("heading", name="Sign in")).to_be_hidden()
    assert page.get_by_label("Prompt", exact=True).input_value() == "typed before the session ended"
    # The refused request was sent again once signed in: its image arrives.
    expect(page.locator("#results img")).to_have_count(before + 1, timeout=DONE)
    assert any(j["prompt"] == "typed before the session ended" for j in api_jobs(server, "root"))
    assert all("401" in line for line in watch.take())  # only the refused call itself


def test_server_page_and_screenshots_of_every_page(
    admin: tuple[Page, ConsoleWatch], server: LiveServer
) -> None:
    page, watch = admin
    page.get_by_role("link", name="Server").click()
    info = page.locator("#server-info")
    expect(info).to_contain_text("worker")
    expect(info).to_contain_text("max steps")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for name in PAGES:
            page.goto(f"{server.url}/ui/#{name}")
            expect(page.locator(f"#page-{name}")).to_be_visible()
            page.wait_for_load_state("networkidle")
            page.evaluate("document.getElementById('toast').hidden = true")
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    page.get_by_role("link", name="Gallery").click()
    page.locator("#gallery-grid button.thumb").first.click()
    page.screenshot(path=str(ARTIFACTS / "viewer-390.png"))
    assert not watch.take()
