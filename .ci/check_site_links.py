"""Check the built site (mkdocs build writes site/): links, anchors, scripts and figures.

mkdocs --strict validates the links of Markdown pages; the executed tutorials are
rendered by nbconvert, whose links it does not see. This walks the HTML of every
page and fails on a link to a missing file or to a missing `#anchor`; on a script
or stylesheet that is missing, or a script loaded from another host (the site must
work offline: MathJax is served with it); on an executed page with fewer inline
figures than its source has `plt.show()` calls (a non-inline matplotlib backend in
the build would drop them silently), without the download link to its source, or
with output on stderr (a warning or a traceback shown to every reader).

    python .ci/check_site_links.py site
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.scripts: list[str] = []  # <script src> and <link href> (stylesheets, prev/next)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag in ("a", "img"):
                self.links.append(value)
            if (tag, name) in (("script", "src"), ("link", "href")) and value:
                self.scripts.append(value)


_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
_STDERR = re.compile(
    r'<div[^>]*data-mime-type="application/vnd\.jupyter\.stderr"[^>]*>(.*?)</div>', re.DOTALL
)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(errors="replace"))
    return page


def _target(site: Path, page: Path, path: str) -> Path:
    """The file a link's path names, from the page it is on."""
    if not path:
        return page
    if path.startswith("/"):  # site-absolute (the 404 page's links)
        return (site / unquote(path).lstrip("/")).resolve()
    return (page.parent / unquote(path)).resolve()


def main(site: Path) -> int:
    pages = {p.resolve(): _parse(p) for p in site.rglob("*.html")}
    broken = []
    for path, page in pages.items():
        where = path.relative_to(site.resolve())
        for link in page.scripts:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                if parts.path.endswith(".js"):
                    broken.append(f"{where}: {link} (a script from another host)")
            elif not link.startswith("data:"):
                target = _target(site, path, parts.path)
                if not (target / "index.html" if target.is_dir() else target).is_file():
                    broken.append(f"{where}: {link} (no such file)")
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:")):
                continue
            target = _target(site, path, parts.path)
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{where}: {link} (no such file)")
            elif parts.fragment and target in pages and parts.fragment not in pages[target].ids:
                broken.append(f"{where}: {link} (no such anchor)")
    docs = Path(__file__).resolve().parents[1] / "docs"
    for source in [*docs.glob("tutorials/*.py"), *docs.glob("examples/*.py")]:
        page = site / source.parent.name / source.stem / "index.html"
        wanted = source.read_text().count("plt.show()")
        if not page.exists():
            broken.append(f"{page}: not built")
            continue
        # Figures are inline PNGs; the theme's icons are small, a plot is tens of kB.
        html = page.read_text()
        found = sum(len(b) > 5000 for b in _PNG.findall(html))
        if found < wanted:
            broken.append(f"{page.relative_to(site)}: {found} figures, its source shows {wanted}")
        if f'href="{source.name}"' not in html:
            broken.append(f"{page.relative_to(site)}: no download link to {source.name}")
        for shown in _STDERR.findall(html):
            text = re.sub(r"<[^>]+>", "", shown).strip()[:200]
            broken.append(f"{page.relative_to(site)}: prints to stderr: {text!r}")
    for line in broken:
        print("broken link:", line)
    checked = sum(len(p.links) + len(p.scripts) for p in pages.values())
    print(f"checked {checked} links, scripts and stylesheets in {len(pages)} pages")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))
