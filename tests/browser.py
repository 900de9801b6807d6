"""Debian's headless Chromium for the page tests: no network but loopback, nothing downloaded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1100,1000",
    # No network but loopback: every other host goes to a proxy that is not there
    # (Chromium never proxies loopback) and resolves to nothing.
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def chromium(log_network: bool = False) -> Iterator:
    """A WebDriver for a fixture to yield from; skips where Chromium is not installed."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (make test installs them as root)"
        )
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    if log_network:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # Its temporary files (shared memory, with --disable-dev-shm-usage) and profile in a
    # folder of its own, removed after it: dozens were left in /tmp by a day's test runs.
    scratch = tempfile.mkdtemp(prefix="chromium-")
    options.add_argument(f"--user-data-dir={scratch}/profile")
    service = Service(CHROMEDRIVER, env={**os.environ, "TMPDIR": scratch})
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(scratch, ignore_errors=True)
