"""/docs: Swagger UI from this service's own assets (no CDN), in a real headless Chromium."""

import json
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from benchmarks.harness import Server
from service.http.docs_page import ASSETS
from service.http.routes import spec
from tests.browser import chromium
from tests.helpers import SHIPPED_MODELS


class References(HTMLParser):
    """Every URL a page refers to: src and href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(page: str) -> list[str]:
    parser = References()
    parser.feed(page)
    return parser.urls


def test_docs_is_swagger_ui_over_the_document_with_local_assets_only(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "SwaggerUIBundle(" in page and 'url: "openapi.json"' in page
    assert "validatorUrl: null" in page and "queryConfigEnabled: false" in page
    assert "http://" not in page and "https://" not in page
    urls = references(page)
    assert "docs/assets/swagger-ui-bundle.js" in urls and "docs/assets/swagger-ui.css" in urls
    for url in urls:
        if url.startswith("data:"):
            continue
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, url
        assert client.get(urljoin("/docs", url)).status_code == 200, url


@pytest.mark.parametrize(
    ("filename", "mimetype"),
    [("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")],
)
def test_assets_come_from_the_package_with_their_type(client, filename, mimetype):
    response = client.get(f"/docs/assets/{filename}")
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.get_data() == (ASSETS / filename).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/..",
        "/docs/assets/../routes.py",
        "/docs/assets/../../pyproject.toml",
        "/docs/assets/..%2f..%2fservice%2froutes.py",
        "/docs/assets/%2e%2e%2f%2e%2e%2fservice%2froutes.py",
        "/docs/assets/..%5c..%5cservice%5croutes.js",
        "/docs/assets/%2fetc%2fpasswd",
        "/docs/assets/LICENSE",  # in the folder, but neither script nor style sheet
        "/docs/assets/oauth2-redirect.html",
        "/docs/assets/missing.js",
    ],
)
def test_asset_route_serves_nothing_else(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_asset_route_is_documented_with_an_example_filename():
    [parameter] = spec()["paths"]["/docs/assets/{filename}"]["get"]["parameters"]
    assert "swagger-ui-bundle.js" in parameter["schema"]["examples"]


# -- the page in a real browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    yield from chromium(log_network=True)


@pytest.fixture(scope="module")
def server():
    with Server(SHIPPED_MODELS, MODEL_POLL_SECONDS="0") as srv:
        yield srv.wait_ready()


def requested_urls(browser) -> list[str]:
    """Every URL the page asked for since the last call (Chromium's network log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.mark.e2e
def test_swagger_ui_renders_every_operation_offline(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("performance")  # forget what came before
    browser.get(server.url + "/docs")
    infer = '.opblock-summary-path[data-path="/v2/models/{name}/infer"]'
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, infer)))
    shown = {
        (block.get_attribute("class"), path.get_attribute("data-path"))
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
        for path in block.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    methods = {(method, path) for path, ops in spec()["paths"].items() for method in ops}
    assert {(re.search(r"opblock-(get|post)\b", c)[1], p) for c, p in shown} == methods
    assert "/v2/models/{name}/infer" in browser.find_element(By.TAG_NAME, "body").text.replace(
        "\u200b", ""
    )

    browser.find_element(By.CSS_SELECTOR, infer).click()  # open it: its examples show
    WebDriverWait(browser, 30).until(
        lambda b: "cats_vs_dogs" in b.find_element(By.CSS_SELECTOR, ".opblock.is-open").text
    )

    urls = requested_urls(browser)
    assert server.url + "/docs/assets/swagger-ui-bundle.js" in urls
    assert server.url + "/openapi.json" in urls
    elsewhere = [u for u in urls if not (u.startswith(server.url + "/") or u.startswith("data:"))]
    assert elsewhere == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
