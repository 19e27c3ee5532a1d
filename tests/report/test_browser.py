"""The HTML report in a real headless Chromium: it renders, is not blank, logs no errors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from roadworthy.report import write_reports
from tests.report._fixtures import fixed_report

pytestmark = pytest.mark.browser


def _driver():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("ROADWORTHY_REQUIRE_BROWSER"):
            pytest.fail(
                "chromium/chromedriver not installed but ROADWORTHY_REQUIRE_BROWSER is set (make browser)"
            )
        pytest.skip("headless chromium not installed (make browser)")
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1200,1600",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def _screenshot_is_not_blank(png: bytes) -> float:
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float(img.std())


def _open(driver, path):
    driver.get(path.as_uri())
    return driver.find_element("tag name", "body").text


def test_fixed_report_renders_in_chromium(tmp_path):
    write_reports(fixed_report(), tmp_path)
    driver = _driver()
    try:
        text = _open(driver, tmp_path / "report.html")
        assert "NOT READY" in text
        assert '<script>alert("x")</script>' in text  # shown as text, not run
        png = driver.get_screenshot_as_png()
        (tmp_path / "screenshot.png").write_bytes(png)
        assert _screenshot_is_not_blank(png) > 10
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        # images are inline and decode: every <img> has a natural width
        widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
        assert widths and all(w > 0 for w in widths)
    finally:
        driver.quit()


def test_real_run_report_renders_with_figures(tmp_path, digits_model, digits_data):
    from roadworthy.session import Session

    report = Session(model=digits_model, data=digits_data, suites=["clean"], budget="quick").run()
    write_reports(report, tmp_path)
    driver = _driver()
    try:
        text = _open(driver, tmp_path / "report.html")
        assert "Clean accuracy" in text
        n_images = driver.execute_script("return document.images.length")
        assert n_images >= 2  # confusion matrix + reliability diagram at least
        widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
        assert all(w > 0 for w in widths)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        png = driver.get_screenshot_as_png()
        assert _screenshot_is_not_blank(png) > 10
    finally:
        driver.quit()
