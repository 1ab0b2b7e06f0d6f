"""/docs: Swagger UI renders /openapi.json in headless Chromium, from this origin only."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import browser, console_errors  # noqa: F401 - the fixture
from tests.support.served import ServedApp

pytestmark = pytest.mark.browser


def test_docs_renders_every_operation(service: ServedApp, browser: WebDriver,  # noqa: F811
                                      tmp_path: Path) -> None:
    """Every operation of the description is listed; nothing is loaded from elsewhere."""
    spec = service.http.get(f"{service.url}/openapi.json", timeout=30).json()
    expected = sum(1 for item in spec["paths"].values() for method in item
                   if method in ("get", "post", "put", "patch", "delete"))
    browser.get(f"{service.url}/docs")
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= expected)
    blocks = browser.find_elements(By.CSS_SELECTOR, ".opblock")
    shown = {(b.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.lower(),
              b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text.replace("\u200b", ""))
             for b in blocks}
    assert ("post", "/v1/files/{file_id}/convert") in shown
    assert len(shown) == expected
    assert "converter" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    # Swagger UI's bundle and styles came from /docs/assets (swagger-ui-bundle), no CDN.
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)")
    assert any("/docs/assets/swagger-ui-bundle.js" in url for url in loaded), loaded
    assert all(url.startswith(service.url + "/") for url in loaded), loaded
    assert console_errors(browser) == []
    browser.save_screenshot(str(tmp_path / "docs.png"))
    print(f"screenshot: {tmp_path / 'docs.png'}")
