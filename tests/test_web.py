"""The page at /, used as a person would: headless Chromium against a served app."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
import requests
from pypdf import PdfReader
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import browser, console_errors  # noqa: F401 - the fixture
from tests.support.outputs import check_output, pdf_text
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.browser
SAMPLE = "docx/SampleDoc.docx"  # two pages: "This is page 1", "This is page two"


class Page:
    """The page's controls, by the ids index.html gives them."""

    def __init__(self, driver: WebDriver, app: ServedApp) -> None:
        self.driver = driver
        driver.get(app.url + "/")
        self.wait(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))

    def wait(self, condition: Any, timeout: float = 30) -> Any:
        """Wait for a Selenium condition."""
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)

    def find(self, css: str) -> WebElement:
        """One element by CSS selector."""
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def use_key(self, key: str) -> None:
        """Paste the key and save it, as a person would."""
        self.find("#api-key").send_keys(key)
        self.find("#save-key").click()

    def drop(self, path: Path) -> None:
        """Choose a file through the file input (what dropping it on the zone also does)."""
        self.find("#file-input").send_keys(str(path))

    def drop_by_event(self, path: Path) -> None:
        """Drop a file on the drop zone, as dragging it from the desktop does."""
        self.driver.execute_script("""
            const [name, b64] = arguments;
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], name));
            document.getElementById('drop-zone').dispatchEvent(
                new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
            """, path.name, base64.b64encode(path.read_bytes()).decode("ascii"))

    def error(self, timeout: float = 30) -> str:
        """The message the error box shows, once it shows one."""
        self.wait(ec.visibility_of_element_located((By.ID, "error")), timeout)
        return self.find("#error-message").text

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the page and say where it is."""
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}")


@pytest.fixture
def key(service: ServedApp, request: pytest.FixtureRequest) -> str:
    """A key of its own for each test, so its recent runs and run budget are its own."""
    return service.create_key("web", request.node.name[:40])


@pytest.mark.engine
def test_upload_convert_download_pdf(service: ServedApp, corpus: Path, key: str,
                                     browser: WebDriver, tmp_path: Path) -> None:  # noqa: F811
    """Key, drop a corpus document, see its format and targets, convert to PDF, download."""
    formats = requests.get(f"{service.url}/v1/formats", timeout=10).json()["sources"]
    page = Page(browser, service)
    page.use_key(key)
    assert browser.execute_script("return sessionStorage.getItem('converter.apiKey')") == key

    page.drop(corpus / SAMPLE)
    page.wait(ec.visibility_of_element_located((By.ID, "file-info")))
    assert page.find("#detected-format").text == "docx"
    assert page.find("#file-name").text == "SampleDoc.docx"
    # The bar followed XMLHttpRequest's upload progress events to the end.
    assert page.find("#upload-progress").get_attribute("value") == "100"
    shown = [e.get_attribute("value") for e in
             browser.find_elements(By.CSS_SELECTOR, "#targets input[name=target]")]
    assert shown == list(formats["docx"]["targets"])
    # Every option the API lists for docx -> pdf has a control, whatever the options are.
    pdf_options = formats["docx"]["targets"]["pdf"]["options"]
    assert pdf_options, "the matrix lists no PDF options to render"
    for name in pdf_options:
        assert page.find(f"[data-option='{name}'] [name='{name}']").is_displayed()

    page.find("#target-pdf").click()
    page.find("#convert").click()
    link = page.wait(ec.visibility_of_element_located((By.ID, "download")), 180)
    assert page.find("#status").text == "Done"
    assert link.text == "Download SampleDoc.pdf"
    download = requests.get(link.get_attribute("href"), timeout=30)
    assert download.status_code == 200
    assert download.content.startswith(b"%PDF")
    check_output("pdf", download.content, "I am a test document")

    # The run just made is the newest of this key's recent runs.
    row = page.wait(ec.visibility_of_element_located((By.CSS_SELECTOR, "#runs tbody tr")))
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1:4] == ["SampleDoc.docx", "pdf", "completed"], cells
    page.screenshot(tmp_path / "page-converted.png")
    assert console_errors(browser) == []


@pytest.mark.engine
def test_options_reach_the_api_and_its_errors_show(service: ServedApp, corpus: Path, key: str,
                                                   browser: WebDriver,  # noqa: F811
                                                   tmp_path: Path) -> None:
    """A bad page_range shows the API's own message; a good one yields just that page."""
    page = Page(browser, service)
    page.use_key(key)
    page.drop_by_event(corpus / SAMPLE)
    page.wait(ec.visibility_of_element_located((By.ID, "file-info")))
    field = page.find("[data-option='page_range'] input")

    field.send_keys("two")
    page.find("#convert").click()
    shown = page.error()
    file_id = requests.get(f"{service.url}/v1/files", headers={"X-API-Key": key},
                           timeout=10).json()["data"][0]["id"]
    expected = error_of(requests.post(
        f"{service.url}/v1/runs", headers={"X-API-Key": key}, timeout=10,
        json={"file_id": file_id, "format": "pdf", "options": {"page_range": "two"}}))
    assert shown == expected["message"]
    assert "page_range" in page.find("#error-detail").text
    page.screenshot(tmp_path / "page-option-error.png")

    field.clear()
    field.send_keys("2")
    page.find("#convert").click()
    link = page.wait(ec.visibility_of_element_located((By.ID, "download")), 180)
    assert not page.find("#error").is_displayed()
    pdf = requests.get(link.get_attribute("href"), timeout=30).content
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 1
    text = pdf_text(pdf)
    assert "page two" in text and "page 1" not in text, text


def test_wrong_key_shows_the_api_message(service: ServedApp, corpus: Path,
                                         browser: WebDriver, tmp_path: Path) -> None:  # noqa: F811
    """An unknown key: listing runs and uploading both show the API's 401 message."""
    wrong = "sk_live_not-a-real-key"
    with (corpus / SAMPLE).open("rb") as fh:
        refused = requests.post(f"{service.url}/v1/files", headers={"X-API-Key": wrong},
                                files={"file": fh}, timeout=30)
    assert refused.status_code == 401
    expected = error_of(refused)["message"]
    page = Page(browser, service)
    page.use_key(wrong)
    # Saving the key lists its runs: refused, said in that section and by the key.
    runs_error = page.wait(ec.visibility_of_element_located((By.ID, "runs-error")))
    assert runs_error.text == expected
    assert expected in page.find("#key-status").text
    assert not page.find("#error").is_displayed()

    page.drop(corpus / SAMPLE)
    assert page.error() == expected
    assert not page.find("#file-info").is_displayed()
    page.screenshot(tmp_path / "page-wrong-key.png")


def test_option_controls_follow_whatever_the_spec_says(service: ServedApp,
                                                       browser: WebDriver) -> None:  # noqa: F811
    """Option kinds the matrix may grow (numbers with ranges, booleans, defaults) render and
    read back with their JSON types, without changes to the page."""
    Page(browser, service)
    spec = {
        "quality": {"type": "integer", "min": 1, "max": 100, "default": 90, "help": "JPEG"},
        "scale": {"type": "number", "help": "zoom"},
        "landscape": {"type": "boolean", "default": False, "help": "turn the page"},
        "tagged": {"type": "boolean", "default": True, "help": "tagged PDF"},
        "pdfa": {"type": "choice", "choices": ["1", "2", "3"], "help": "PDF/A part"},
        "dpi": {"type": "integer", "choices": [72, 150, 300], "default": 150, "help": "d"},
        "page_range": {"help": "pages to export"},
    }
    browser.execute_script("""
        const box = document.createElement('div'); box.id = 'probe';
        document.body.append(box);
        window.probe = window.converterPage.renderOptions(box, arguments[0]);""", spec)

    def collect() -> dict[str, Any]:
        got: dict[str, Any] = browser.execute_script(
            "return window.converterPage.collectOptions(window.probe)")
        return got

    assert collect() == {}, "untouched controls must leave the service's defaults alone"
    quality = browser.find_element(By.ID, "opt-quality")
    assert quality.get_attribute("placeholder") == "90"
    assert "1 to 100" in browser.find_element(
        By.CSS_SELECTOR, "#probe [data-option='quality'] small").text
    quality.send_keys("75")
    browser.find_element(By.ID, "opt-scale").send_keys("1.5")
    browser.find_element(By.ID, "opt-landscape").click()
    browser.find_element(By.ID, "opt-tagged").click()
    for name, label in (("pdfa", "2"), ("dpi", "300")):
        select = browser.find_element(By.ID, f"opt-{name}")
        select.find_element(By.XPATH, f"option[normalize-space()='{label}']").click()
    browser.find_element(By.ID, "opt-page_range").send_keys("1-3")
    assert collect() == {"quality": 75, "scale": 1.5, "landscape": True, "tagged": False,
                         "pdfa": "2", "dpi": 300, "page_range": "1-3"}


def test_page_and_assets_are_served_without_a_key(service: ServedApp) -> None:
    """/ and its script and style come from the app itself, locked to its own origin."""
    index = requests.get(f"{service.url}/", timeout=10)
    assert index.status_code == 200
    assert index.headers["Content-Type"].startswith("text/html")
    for asset, media_type in (("/web/app.js", "text/javascript"), ("/web/style.css", "text/css")):
        assert f'"{asset}"' in index.text
        served = requests.get(service.url + asset, timeout=10)
        assert served.status_code == 200, asset
        assert served.headers["Content-Type"].startswith(media_type), served.headers
        assert len(served.content) > 1000, asset
    for response in (index, served):
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-cache"
    assert "://" not in index.text, "the page loads nothing from elsewhere"
    assert requests.get(f"{service.url}/web/favicon.svg", timeout=10).status_code == 200
