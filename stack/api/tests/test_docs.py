"""/docs and /redoc work air-gapped: every file they load comes from the API itself (issue 18)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

PAGES = ("/docs", "/redoc")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


class DocsPage(HTMLParser):
    """A docs page read with the standard library's HTML parser: its URL attributes, its inline
    scripts and its text outside comments."""

    URL_ATTRIBUTES = frozenset({"href", "src", "spec-url"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.attributes: list[str] = []
        self.scripts: list[str] = []
        self.uncommented: list[str] = []
        self.in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [value for name, value in attrs if name in self.URL_ATTRIBUTES and value is not None]
        self.uncommented += [value for _, value in attrs if value]
        self.in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False

    def handle_data(self, data: str) -> None:
        self.uncommented.append(data)
        if self.in_script:
            self.scripts.append(data)


def referenced_urls(html: str) -> list[str]:
    """Every URL a docs page loads: href/src attributes, ReDoc's spec-url, Swagger UI's `url:` in a script."""
    page = DocsPage(html)
    # Swagger UI's configuration is JavaScript: its `url: '...'` is found in the scripts' text only.
    return page.attributes + [url for script in page.scripts for url in re.findall(r"\burl:\s*'([^']*)'", script)]


def test_the_url_finder_sees_attributes_and_script_urls():
    html = """<link href="a.css"><script src="b.js"></script><redoc spec-url="c.json"></redoc>
    <script>const ui = SwaggerUIBundle({url: 'd.json',})</script><p>url: 'not-a-script.json'</p>
    <!-- <script src="commented.js"></script> -->"""
    assert referenced_urls(html) == ["a.css", "b.js", "c.json", "d.json"]


@pytest.mark.parametrize("page", PAGES)
def test_docs_pages_reference_only_same_origin_urls(client: TestClient, page: str):
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = referenced_urls(response.text)
    assert len(urls) >= 3, urls  # stylesheet or icon, script, schema
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {url} from elsewhere"
    # Nothing else on the page names another host either (no CDN, no fonts, no validator badge).
    assert not any("//" in text for text in DocsPage(response.text).uncommented), response.text
    assert "'openapi.json'" in response.text or '"openapi.json"' in response.text


@pytest.mark.parametrize("page", PAGES)
def test_every_file_a_docs_page_loads_answers_200_with_its_content_type(client: TestClient, page: str):
    for url in referenced_urls(client.get(page).text):
        path = urlsplit(urljoin(f"http://testserver{page}", url)).path
        response = client.get(path)
        assert response.status_code == 200, path
        suffix = path[path.rfind(".") :]
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in CONTENT_TYPES[suffix], f"{path}: {media_type}"
        assert len(response.content) > 1000, path


def test_the_swagger_and_redoc_scripts_are_the_real_bundles(client: TestClient):
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle.js").text
    assert ".swagger-ui" in client.get("/docs-assets/swagger-ui.css").text
    assert "Redoc" in client.get("/docs-assets/redoc.standalone.js").text


@pytest.mark.parametrize("page", PAGES)
def test_behind_the_web_uis_proxy_every_url_stays_under_api(client: TestClient, page: str):
    # nginx serves the API under /api/ and strips the prefix: the page at /api/docs must load
    # /api/docs-assets/... and /api/openapi.json, which reach the API as /docs-assets/..., /openapi.json.
    for url in referenced_urls(client.get(page).text):
        proxied = urlsplit(urljoin(f"http://ui.example/api{page}", url)).path
        assert proxied.startswith("/api/"), f"{url} resolves to {proxied}, outside the API's prefix"
        assert client.get(proxied.removeprefix("/api")).status_code == 200, proxied


def test_docs_assets_are_not_in_the_schema(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(path.startswith(("/docs", "/redoc")) for path in paths)
