"""The demo page in a real headless Chromium (Debian's), against a real gunicorn."""

import os
import shutil

import pytest

from benchmarks.harness import Server
from tests.helpers import SHIPPED_MODELS, jpeg_bytes

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (make test installs them as root)"
        )
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server():
    with Server(SHIPPED_MODELS, MODEL_POLL_SECONDS="0") as srv:
        yield srv.wait_ready()


def upload(browser, path):
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "file").send_keys(str(path))


def test_upload_a_jpeg_and_see_the_label(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes((320, 240)))
    browser.get(server.url + "/")
    upload(browser, photo)
    WebDriverWait(browser, 30).until(ec.visibility_of_element_located((By.ID, "result")))
    assert browser.find_element(By.ID, "label").text in ("cats", "dogs")
    classes = browser.find_elements(By.CSS_SELECTOR, "#bars .class")
    assert sorted(c.get_attribute("data-class") for c in classes) == ["cats", "dogs"]
    assert browser.find_element(By.ID, "model").text == "cats_vs_dogs"
    assert browser.find_element(By.ID, "version").text.isdigit()
    assert float(browser.find_element(By.ID, "latency").text) > 0
    assert browser.find_element(By.ID, "error").text == ""


def test_a_bad_file_is_explained_in_words(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    browser.get(server.url + "/")
    upload(browser, bad)
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "error").text)
    assert "not a recognised image" in browser.find_element(By.ID, "error").text
    assert not browser.find_element(By.ID, "result").is_displayed()
