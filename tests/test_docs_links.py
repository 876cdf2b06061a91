"""The README and docs/ hold together: every relative link and image points to a file that
exists, and every page of docs/ is reachable from the README."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^ *(```|~~~).*?^ *\1", re.S | re.M)
CODE = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def links(page: Path) -> list[str]:
    """The link and image targets of a markdown page, outside code blocks and code spans."""
    text = CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    return LINK.findall(text)


def local_target(page: Path, target: str) -> Path | None:
    if EXTERNAL.match(target) or target.startswith("#"):
        return None
    return (page.parent / unquote(target.split("#", 1)[0].split("?", 1)[0])).resolve()


def test_every_relative_link_resolves():
    missing = []
    for page in PAGES:
        for target in links(page):
            path = local_target(page, target)
            if path is not None and not path.exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, "links to missing files:\n" + "\n".join(missing)


def test_every_docs_page_is_linked_from_the_readme():
    readme = ROOT / "README.md"
    linked = {local_target(readme, target) for target in links(readme)}
    unlinked = [str(page.relative_to(ROOT)) for page in PAGES[1:] if page.resolve() not in linked]
    assert not unlinked, "docs pages the README does not link: " + ", ".join(unlinked)
