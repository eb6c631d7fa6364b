"""The built documentation site: strict, self-contained (it renders with no network), every page
in the navigation, the API reference under public names, and the math typeset in a browser."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Attributes through which a page loads something (a link in <a href> is only a link).
RESOURCE_ATTRS = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and name in RESOURCE_ATTRS.get(tag, ()):
                if name == "srcset":
                    self.found += [part.split()[0] for part in value.split(",") if part.strip()]
                elif not (tag == "link" and dict(attrs).get("rel") in ("canonical", "alternate")):
                    self.found.append(value)


def _resources(site: Path) -> list[tuple[Path, str]]:
    refs = []
    for page in site.rglob("*.html"):
        parser = _Resources()
        parser.feed(page.read_text())
        refs += [(page, ref) for ref in parser.found]
    for sheet in site.rglob("*.css"):
        refs += [(sheet, a or b) for a, b in CSS_URL.findall(sheet.read_text())]
    return refs


def test_every_script_stylesheet_image_and_font_is_inside_the_site(site):
    refs = _resources(site)
    assert any(ref.endswith("tex-svg.js") for _, ref in refs), "the math renderer is not loaded"
    external = sorted({ref for _, ref in refs if urlsplit(ref).scheme or ref.startswith("//")})
    assert external == [], f"the site loads from the network: {external}"
    missing = []
    for source, ref in refs:
        if ref.startswith("data:"):
            continue
        path = urlsplit(ref).path
        base = site if path.startswith("/") else source.parent  # 404.html uses root paths
        target = (base / path.lstrip("/")).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            missing.append(f"{source.relative_to(site)} -> {ref}")
    assert missing == []


def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = {next(iter(entry.values())) for entry in config["nav"]}
    pages = {
        str(p.relative_to(ROOT / "docs"))
        for p in (ROOT / "docs").rglob("*.md")
        if "snippets" not in p.parts
    }
    assert pages == in_nav


def test_api_reference_uses_public_names_and_renders_cross_references(site):
    api = (site / "api" / "index.html").read_text()
    assert not re.search(r":(class|func|meth|attr|mod|data|obj):`", api), "raw Sphinx roles"
    headings = set(re.findall(r'<h[2-4][^>]* id="([\w.]+)"', api))
    for public in (
        "adamp_core.init",
        "adamp_core.step",
        "adamp_core.projection",
        "adamp_core.AdamPConfig",
        "adapters.torch.AdamP",
        "adapters.optax.adamp",
    ):
        assert public in headings, public
    private = sorted(h for h in headings if h.startswith(("adamp_core.raw.", "adamp_core.config.")))
    assert private == []
    # cross-references became links: `init`'s name in step()'s parameters links to its entry
    assert re.search(r'<a [^>]*href="#adamp_core\.init"', api)


def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_math_page_renders_in_a_browser_without_network(site, served, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    spans = (site / "math" / "index.html").read_text().count('class="arithmatex"')
    assert spans >= 10
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path}",
            "--proxy-server=127.0.0.1:9",  # anything not on loopback fails: no network
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{served}/math/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    typeset = dom.count("<mjx-container")
    assert typeset == spans, f"{typeset} of {spans} equations typeset"
    assert not re.search(r'<g [^>]*data-mml-node="merror"', dom), "an equation failed to parse"
    # no TeX left as text: outside code, scripts and typeset equations, neither "$" nor "\\"
    text = re.sub(r"<(script|style|code|mjx-container)\b.*?</\1>", "", dom, flags=re.S)
    text = re.sub(r"<[^>]+>", "", text)
    assert "$" not in text and "\\" not in text, re.findall(r".{0,30}[$\\].{0,30}", text)[:3]
