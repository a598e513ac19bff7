"""The web console: served at /console/, self-contained, and calling only API paths that exist."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx

from pooldrop.web import STATIC_DIR
from tests.support.api import Api

JS_DIR = STATIC_DIR / "js"
CONTENT_TYPES = {
    ".css": "text/css",
    ".js": "javascript",  # text/javascript or application/javascript: both run as modules
    ".svg": "image/svg+xml",
}
# A path in a JS string or template literal; `${...}` parts are path parameters.
API_PATH = re.compile(r"""["'`](/api/v1/[^"'`?\s]*)""")
# A direct call of one of api.js's verb helpers with a literal path.
API_CALL = re.compile(r"""\b(get|post|put|patch|del)\(\s*["'`](/api/v1/[^"'`?\s]*)""")
# Paths built by api.js helpers, and the method the console uses on each.
HELPER_METHODS = {
    "/api/v1/pools/{}/uploads": "post",  # uploadFile (XMLHttpRequest)
    "/api/v1/pools/{}/uploads/{}/content": "get",  # saveAs
    "/api/v1/pools/{}/results/{}/content": "get",  # saveAs
    "/api/v1/pools/{}/events/stream": "get",  # EventSource
}


class _Refs(HTMLParser):
    """Every src/href of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def _normalize(path: str) -> str:
    """`${enc(id)}` (JS) and `{pool_id}` (OpenAPI) both become `{}`."""
    return re.sub(r"\{[^}]*\}", "{}", re.sub(r"\$\{[^}]*\}", "{}", path)).rstrip("/")


def _js_sources() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(JS_DIR.glob("*.js"))}


async def _openapi(client: httpx.AsyncClient) -> dict[str, set[str]]:
    """Paths (normalized) and their methods, from the document the app serves."""
    r = await client.get("/openapi.json")
    assert r.status_code == 200, r.text
    return {_normalize(path): set(ops) for path, ops in r.json()["paths"].items()}


async def test_console_serves_index_html(api: Api) -> None:
    r = await api.anon.get("/console/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/main.js">' in r.text
    assert r.text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    # Only the console's own files may run or be fetched; the page may not be framed.
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_root_and_bare_prefix_redirect_to_the_console(api: Api) -> None:
    r = await api.anon.get("/", follow_redirects=False)
    assert r.status_code in (301, 302, 303, 307, 308)
    assert r.headers["location"] == "/console/"
    r = await api.anon.get("/console", follow_redirects=False)
    assert r.status_code in (301, 302, 303, 307, 308)
    assert httpx.URL(r.headers["location"]).path == "/console/"
    r = await api.anon.get("/", follow_redirects=True)
    assert r.status_code == 200 and r.url.path == "/console/"


async def test_every_asset_loads_with_its_content_type(api: Api) -> None:
    html = (await api.anon.get("/console/")).text
    parser = _Refs()
    parser.feed(html)
    local = [ref for ref in parser.refs if not ref.startswith("#")]
    assert "console.css" in local and "js/main.js" in local
    # Modules pull in each other: every JS file must load, with a type browsers run as a module.
    assets = {*local, *(f"js/{name}" for name in _js_sources())}
    for ref in sorted(assets):
        r = await api.anon.get(f"/console/{ref}")
        assert r.status_code == 200, ref
        expected = CONTENT_TYPES[Path(ref).suffix]
        assert expected in r.headers["content-type"], (ref, r.headers["content-type"])
        assert r.content == (STATIC_DIR / ref).read_bytes()
    assert (await api.anon.get("/console/js/missing.js")).status_code == 404


def test_every_imported_module_exists() -> None:
    sources = _js_sources()
    imported = {
        name
        for text in sources.values()
        for name in re.findall(r"""from\s+["']\./([\w.-]+\.js)["']""", text)
    }
    assert imported, "no imports found: the regex no longer matches the code"
    assert imported <= set(sources), imported - set(sources)
    # Every module is used by someone (main.js is loaded by the page).
    assert set(sources) - imported == {"main.js"}


def test_console_is_self_contained_and_builds_dom_safely() -> None:
    files = [STATIC_DIR / "index.html", STATIC_DIR / "console.css", *sorted(JS_DIR.glob("*.js"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        # Offline machines: nothing may come from another host (no CDN, no web fonts).
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path.name
        assert "@import" not in text, path.name
    for name, text in _js_sources().items():
        # Server strings reach the page as text only: no markup parsing anywhere.
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{name} uses {sink}"


async def test_every_api_path_the_console_calls_exists(api: Api) -> None:
    spec = await _openapi(api.anon)
    called = {
        _normalize(path) for text in _js_sources().values() for path in API_PATH.findall(text)
    }
    # The features the console has: a regex that stopped matching would pass vacuously.
    for expected in (
        "/api/v1/auth/login",
        "/api/v1/pools/{}/members/{}",
        "/api/v1/pools/{}/keys/{}",
        "/api/v1/pools/{}/enrollments",
        "/api/v1/pools/{}/groups/{}/close",
        "/api/v1/pools/{}/events/stream",
        "/api/v1/admin/uploads",
        "/api/v1/admin/users",
    ):
        assert expected in called, expected
    missing = sorted(called - set(spec))
    assert not missing, f"the console calls paths the API does not have: {missing}"


async def test_every_api_call_uses_a_method_the_path_has(api: Api) -> None:
    spec = await _openapi(api.anon)
    calls = {
        (method.replace("del", "delete"), _normalize(path))
        for text in _js_sources().values()
        for method, path in API_CALL.findall(text)
    }
    calls |= {(method, path) for path, method in HELPER_METHODS.items()}
    assert len(calls) >= 20, calls
    wrong = sorted((m, p) for m, p in calls if m not in spec.get(p, set()))
    assert not wrong, f"method not offered by the API: {wrong}"
