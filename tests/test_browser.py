"""The serving app's upload page in a real browser: headless Chromium, driven by Selenium,
uploads an image to a running server and shows the answer the Predictor gives.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``;
``make test`` installs them when it runs as root, see ``tools/ensure_browser.sh``). The
environment variables ``CHROMIUM`` and ``CHROMEDRIVER`` point at other binaries. The driver
is always given by path, so Selenium Manager never downloads one.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from helpers import export as ex
from helpers import serve
from tests.serve_fixtures import encode, synthetic_pictures, train_tiny_checkpoint

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
MISSING = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
WAIT = 60  # seconds: the first prediction and explanation on a busy 2-core machine

pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"the browser test needs {' and '.join(MISSING)}: apt-get install chromium "
    "chromium-driver (make test does it as root), or set CHROMIUM and CHROMEDRIVER",
)

BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",  # containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",  # no update checks, no safe-browsing lists
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1024,900",
)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ex.Predictor]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ex.Predictor.from_path(train_tiny_checkpoint(tmp_path_factory.mktemp("run")))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server(predictor: ex.Predictor) -> Iterator[serve.BackgroundServer]:
    with serve.start_server(serve.create_app(predictor), port=0) as running:
        yield running
    assert not running.running


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options.add_argument(f"--user-data-dir={profile}")  # a fresh profile each run
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        try:
            yield driver
        finally:
            driver.quit()


def _open_page(browser: webdriver.Chrome, url: str) -> None:
    """Load the page and wait until its script has asked /health for the model version."""
    browser.get(url + "/")
    WebDriverWait(browser, WAIT).until(
        lambda b: b.find_element(By.ID, "version").text not in ("", "…")
    )


def _upload(browser: webdriver.Chrome, path: Path) -> None:
    """Choose ``path`` in the page's file input, as a user picking a file does."""
    browser.find_element(By.ID, "file").send_keys(str(path))


def _overlay_loaded(browser: webdriver.Chrome) -> bool:
    overlay = browser.find_element(By.ID, "overlay")
    return overlay.is_displayed() and bool(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay)
    )


def test_the_page_shows_the_predictors_answer_and_the_overlay(
    browser, server, predictor, tmp_path
) -> None:
    png = encode(synthetic_pictures(1)[0].resize((96, 96)))
    image_file = tmp_path / "upload.png"
    image_file.write_bytes(png)
    expected = predictor.predict(png, topk=5)[0]

    _open_page(browser, server.url)
    assert browser.find_element(By.ID, "version").text == predictor.version
    _upload(browser, image_file)
    label = browser.find_element(By.ID, "label")
    WebDriverWait(browser, WAIT).until(lambda _: label.get_attribute("data-top"))
    assert label.get_attribute("data-top") == expected[0][0]  # the Predictor's top-1
    assert label.text.startswith(expected[0][0] + " (")

    bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
    assert len(bars) == 5
    shown = [re.fullmatch(r"(.+): (\d+\.\d)%", bar.get_attribute("aria-label")) for bar in bars]
    assert all(shown), [bar.get_attribute("aria-label") for bar in bars]
    assert [match[1] for match in shown] == [name for name, _ in expected]
    for match, (_, probability) in zip(shown, expected, strict=True):
        assert float(match[2]) == pytest.approx(100 * probability, abs=0.051)

    WebDriverWait(browser, WAIT).until(_overlay_loaded)
    caption = browser.find_element(By.ID, "overlay-caption").text
    assert expected[0][0] in caption
    assert browser.find_element(By.ID, "preview").is_displayed()
    assert browser.find_element(By.ID, "error").text == ""


def test_the_page_shows_a_refusal_and_keeps_working(browser, server, tmp_path) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("<?php echo 'hi'; ?>", encoding="utf-8")
    _open_page(browser, server.url)
    _upload(browser, not_an_image)
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, WAIT).until(lambda _: error.text)
    assert "not an image" in error.text
    assert browser.find_element(By.ID, "label").text == ""
    assert browser.find_elements(By.CSS_SELECTOR, "#bars li") == []
