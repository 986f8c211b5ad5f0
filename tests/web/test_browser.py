"""The web view in a real browser: Debian's headless Chromium, driven over WebDriver.

Loads the executions list and an execution page of a demo-filled store, finds the transcript
rows and the chart, and sees a message appended through the store appear on a running
execution's page without a reload. ``QMCP_UPDATE_SCREENSHOTS=1`` saves the screenshots the
README shows into docs/.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from qmcp_agents.adapters.web import create_app

from .conftest import Filled, add_running_message

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parents[2] / "docs"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)) and os.environ.get("CI") != "true",
    reason="Debian's chromium and chromium-driver are not installed (make test installs them under CI)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(filled: Filled) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(create_app(url=filled.url), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "the web view did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> None:
    target = DOCS if os.environ.get("QMCP_UPDATE_SCREENSHOTS") == "1" else tmp_path
    assert driver.save_screenshot(str(target / name))


def test_pages_render_and_a_running_execution_updates_live(
    server: str, browser: webdriver.Chrome, filled: Filled, tmp_path: Path
) -> None:
    import asyncio

    browser.get(server + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#executions tr.execution-row")
    assert len(rows) == 6
    _shot(browser, tmp_path, "web-executions.png")

    browser.get(f"{server}/executions/{filled.debate}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#transcript-rows tr.message")) == 5
    circles = "return document.getElementById('chart').contentDocument.querySelectorAll('circle').length"
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(circles) == 5)
    browser.set_window_size(1280, 1900)
    _shot(browser, tmp_path, "web-execution.png")
    browser.set_window_size(1280, 1000)

    browser.get(f"{server}/executions/{filled.running}")
    assert browser.find_elements(By.CSS_SELECTOR, "#transcript-rows tr.message") == []
    asyncio.run(add_running_message(filled.url, filled.running, {"note": "<b>appended</b> while watching"}))
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#transcript-rows tr.message")) == 1
    )
    row = browser.find_element(By.CSS_SELECTOR, "#transcript-rows tr.message")
    assert "<b>appended</b> while watching" in row.text  # shown as text, not markup
    assert browser.find_elements(By.CSS_SELECTOR, "#transcript-rows b") == []
