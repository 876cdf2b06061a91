"""docs/layout.md names every file of the code, one line each, and nothing that is gone: the page
went stale once (it still listed files after they moved, and missed new ones)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("stages", "ganlab", "scripts")


def named_in_layout(text: str) -> set[str]:
    """Paths the page's listing names: ``folder/`` headings, and the indented file lines under them."""
    block = text.split("```", 2)[1]
    named, folder = set(), None
    for line in block.splitlines():
        if heading := re.match(r"^([\w.-]+)/\s", line):
            folder = heading.group(1)
        elif (entry := re.match(r"^  ([\w./-]+\.\w+)\s", line)) and folder in FOLDERS:
            named.add(f"{folder}/{entry.group(1)}")
    return named


def in_tree() -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py" and p.suffix != ".pyc"
    }


def test_the_layout_page_names_every_file_and_no_other():
    named, tree = named_in_layout((ROOT / "docs/layout.md").read_text(encoding="utf-8")), in_tree()
    assert not tree - named, f"docs/layout.md does not name: {sorted(tree - named)}"
    assert not named - tree, f"docs/layout.md names files that are gone: {sorted(named - tree)}"
