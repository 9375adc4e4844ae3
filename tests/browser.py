"""A real browser for the tests: Debian's headless Chromium, driven by selenium through Debian's
chromium-driver (both installed by .ci/run; the tests download nothing).

Use the ``browser`` fixture (import it into a test module: ``from browser import browser``); it
skips, with the reason, where Chromium or its driver is missing. ``console_errors(driver)`` and
``failed_requests(driver)`` read what the page logged and which of its requests failed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

# as the machine's notes say: without the background-networking flags Chromium keeps calling
# out, and this machine's closed network refuses it
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600"]


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium with performance and browser logs on (for failed requests and console
    errors); one for the session."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"no Chromium and chromedriver at {CHROMIUM}, {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="vaekit-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    """The page's console messages at level SEVERE since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def failed_requests(driver) -> list[str]:
    """``URL: why`` of the page's requests (those a frame of the page made) that failed to load
    or answered 4xx/5xx, since the last call. Chromium's own background requests, which this
    machine's closed network refuses, are not the page's and are left out."""
    sent: dict[str, str] = {}  # requestId -> URL, for the page's requests
    failed = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent" and params.get("frameId"):
            sent[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("requestId") in sent:
            failed.append(f"{sent[params['requestId']]}: {params.get('errorText')}")
        elif message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['url']}: {params['response']['status']}")
    return failed
