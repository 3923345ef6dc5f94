"""The web UI in a real headless Chromium against a real server on the real library: it lists
the models, generates, shows the job complete and its thumbnail; with auth on it logs in first.

Chromium comes from Debian (scripts/test installs it when it can); Playwright drives it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from sdrest.settings import Settings
from sdrest.testing import TinyModelSet
from tests.api.support import PASSWORDS, add_accounts
from tests.conftest import settings_in
from tests.live import LiveServer, live_server

pytestmark = pytest.mark.native
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


def generate_in_the_ui(page: Page) -> None:
    expect(page.locator("#models option[value='tiny-flux2']")).to_have_count(1)
    page.fill("input[name=width]", "64")
    page.fill("input[name=height]", "64")
    page.fill("input[name=steps]", "2")
    page.fill("input[name=cfg_scale]", "1")
    page.fill("textarea[name=prompt]", "a lovely cat in a browser")
    page.click("#gen-form button[type=submit]")
    row = page.locator("#jobs tr", has_text="a lovely cat in a browser")
    expect(row).to_contain_text("completed", timeout=60_000)
    thumbnail = page.locator("#gallery img").first
    expect(thumbnail).to_be_visible(timeout=30_000)
    loaded = thumbnail.evaluate("img => img.complete && img.naturalWidth")
    assert loaded == 64  # the real thumbnail of the 64x64 output, not a broken image
    assert page.locator("#gen-error").text_content() == ""


def test_generate_from_the_ui(browser: Browser, live: LiveServer) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live.url + "/")  # redirects to /ui/
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
    generate_in_the_ui(page)
    assert not errors, errors


@pytest.fixture
def auth_live(tmp_path: Path, tiny_models: TinyModelSet) -> Iterator[LiveServer]:
    settings: Settings = settings_in(
        tmp_path,
        tiny_models.root,
        model="tiny-flux2",
        threads=2,
        auth_mode="jwt",
        auth_failure_delay=0.0,
    )
    add_accounts(settings)
    with live_server(settings) as server:
        yield server


def test_login_then_generate(browser: Browser, auth_live: LiveServer) -> None:
    page = browser.new_page()
    page.goto(auth_live.url + "/ui/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).not_to_be_empty()
    page.fill("input[name=password]", PASSWORDS["alice"])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#user")).to_contain_text("alice")
    generate_in_the_ui(page)
