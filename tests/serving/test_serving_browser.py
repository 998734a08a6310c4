"""The web page end to end in headless Chromium (Debian's binary driven by Playwright).

No browser download: Playwright launches ``/usr/bin/chromium``. When it is missing the test
fails with the install command (never skips): ``make system-deps`` installs it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = os.environ.get("OMNIFUSE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.slow
def test_page_uploads_a_file_and_renders_results(
    live_server: str, data_dir: Path, val_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install it with `sudo apt-get install -y chromium`")
    start = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(live_server + "/")
            page.wait_for_selector("#task option[value=shape]", state="attached")
            run_task(page, "shape", data_dir / val_rows[0]["image"])
            bars = page.locator("#result .bar")
            assert bars.count() == 6  # one bar per ShapesWorld class
            assert page.locator("#result .bar.top .name").inner_text() in page.inner_text(
                "#result .text-out"
            )
            page.screenshot(path=str(tmp_path / "classify.png"), full_page=True)
            run_task(page, "asr", data_dir / val_rows[0]["audio"])
            assert page.locator("#result .text-out").count() == 1
            run_task(page, "answer", data_dir / val_rows[0]["image"], "what shape is it?")
            assert page.locator("#result .bar").count() == 25
            page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "classify.png").stat().st_size > 1000
    print(f"browser test: {time.monotonic() - start:.1f} s, screenshots in {tmp_path}")


def run_task(page: Page, task: str, upload: Path, text: str = "") -> None:
    """Pick ``task``, upload ``upload`` (and type ``text``), submit, wait for the result."""
    page.select_option("#task", task)
    if text:
        page.fill("#text", text)
    page.evaluate("document.getElementById('result').dataset.done = ''")
    kind = "audio" if upload.suffix == ".wav" else "image"
    page.set_input_files(f"#file-{kind}", str(upload))
    page.click("#submit")
    page.wait_for_selector("#result[data-done='1']", timeout=30_000)
    assert page.locator("#result .error").count() == 0, page.inner_text("#result")


@pytest.mark.slow
def test_page_plays_a_generated_video(live_video_server: str, tmp_path: Path) -> None:
    """Text -> ``/v1/generate-video`` -> an MP4 the page's ``<video>`` element decodes."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install it with `sudo apt-get install -y chromium`")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(live_video_server + "/")
            page.wait_for_selector("#task option[value=gen]", state="attached")
            assert not page.is_visible("#drop")  # text-only task: no file inputs
            page.fill("#text", "a red square moving right")
            page.click("#submit")
            page.wait_for_selector("#result[data-done='1']", timeout=60_000)
            assert page.locator("#result .error").count() == 0, page.inner_text("#result")
            # readyState >= 2: the first frame is decoded (Chromium can play the MP4).
            page.wait_for_function(
                "document.querySelector('#result video').readyState >= 2", timeout=30_000
            )
            duration = page.evaluate("document.querySelector('#result video').duration")
            assert duration > 0
            page.screenshot(path=str(tmp_path / "video.png"), full_page=True)
        finally:
            browser.close()
