"""The README and docs/: every relative link and anchor resolves, every page is reachable, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")
FENCE = re.compile(r"(?ms)^```.*?^```")


def prose(path: Path) -> str:
    """A page without its code blocks (links there are code, not links)."""
    return FENCE.sub("", path.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"`|\*\*|\*", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in prose(path).splitlines() if line.startswith("#")}


def links(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in LINK.finditer(prose(path))]


def broken_links(path: Path) -> list[str]:
    broken = []
    for label, target in links(path):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"[{label}]({target}): no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"[{label}]({target}): no heading #{anchor} in {destination.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path):
    assert broken_links(page) == []


def test_every_docs_page_is_reachable_from_the_readme():
    seen, frontier = {ROOT / "README.md"}, [ROOT / "README.md"]
    while frontier:
        page = frontier.pop()
        for _, target in links(page):
            file_part = target.partition("#")[0]
            destination = (page.parent / file_part).resolve() if file_part else page
            if destination.suffix == ".md" and destination.is_relative_to(ROOT / "docs") and destination not in seen:
                seen.add(destination)
                frontier.append(destination)
    assert sorted(p.name for p in PAGES[1:] if p not in seen) == []


def test_the_readme_is_a_users_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_the_link_check_fails_on_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n")
    page.write_text("# Page\n[a](other.md#other-page) [b](missing.md) [c](other.md#nowhere) [d](#page)\n")
    assert broken_links(page) == [
        "[b](missing.md): no such file",
        "[c](other.md#nowhere): no heading #nowhere in other.md",
    ]
