"""Check the built site (mkdocs build writes site/): links, anchors and figures.

mkdocs --strict validates the links of Markdown pages; the executed tutorials are
rendered by nbconvert, whose links it does not see. This walks the HTML of every
page and fails on a link to a missing file or to a missing `#anchor`, and on an
executed page with fewer inline figures than its source has `plt.show()` calls
(a non-inline matplotlib backend in the build would drop them silently).

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
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag in ("a", "img"):
                self.links.append(value)


_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(errors="replace"))
    return page


def main(site: Path) -> int:
    pages = {p.resolve(): _parse(p) for p in site.rglob("*.html")}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:")):
                continue
            if not parts.path:
                target = path
            elif parts.path.startswith("/"):  # site-absolute (the 404 page's links)
                target = (site / unquote(parts.path).lstrip("/")).resolve()
            else:
                target = (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.relative_to(site.resolve())}: {link} (no such file)")
            elif parts.fragment and target in pages and parts.fragment not in pages[target].ids:
                broken.append(f"{path.relative_to(site.resolve())}: {link} (no such anchor)")
    docs = Path(__file__).resolve().parents[1] / "docs"
    for source in [*docs.glob("tutorials/*.py"), *docs.glob("examples/*.py")]:
        page = site / source.parent.name / source.stem / "index.html"
        wanted = source.read_text().count("plt.show()")
        if not page.exists():
            broken.append(f"{page}: not built")
            continue
        # Figures are inline PNGs; the theme's icons are small, a plot is tens of kB.
        found = sum(len(b) > 5000 for b in _PNG.findall(page.read_text()))
        if found < wanted:
            broken.append(f"{page.relative_to(site)}: {found} figures, its source shows {wanted}")
    for line in broken:
        print("broken link:", line)
    print(f"checked {sum(len(p.links) for p in pages.values())} links in {len(pages)} pages")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))
