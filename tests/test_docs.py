"""The documentation holds together: the README stays a front page, every relative link in it and
in docs/ leads to a file (and a heading) that exists, and every page is in the site's navigation.

Stdlib only, so it runs wherever the tests run; `make docs` (MkDocs, strict) checks the same for the
pages, and this test also covers the README, which the site does not build.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
README_LIMIT_BYTES = 20_000

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
NAV_PAGE = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?([\w./-]+\.md)\s*$", re.M)


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def prose(text: str) -> str:
    """The text a reader sees as prose: code blocks, inline code and comments removed."""
    return INLINE_CODE.sub("", FENCE.sub("", HTML_COMMENT.sub("", text)))


def slug(heading: str) -> str:
    """The anchor of a heading, as MkDocs (Python-Markdown's toc) and GitHub make it."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("**", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}_{count}")
    return found


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path.read_text(encoding="utf-8")))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of a markdown file that leads nowhere, with the reason."""
    broken = []
    for link in relative_links(path):
        target_part, _, anchor = link.partition("#")
        target = (path.parent / target_part).resolve() if target_part else path
        if not target.exists():
            broken.append(f"{link}: no file {target.relative_to(root)}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.relative_to(root)}")
    return broken


def test_readme_is_a_front_page() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT_BYTES, (
        f"README.md is {size:,} bytes; a front page holds at most {README_LIMIT_BYTES:,}: "
        "move the detail into a page under docs/ and link to it"
    )


def test_the_readme_links_into_every_page() -> None:
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in relative_links(README)}
    unlinked = [str(p.relative_to(ROOT)) for p in pages() if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link to {unlinked}"


@pytest.mark.parametrize("path", [README, *pages()], ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == [], f"broken links in {path.relative_to(ROOT)}"


def test_every_page_is_in_the_nav() -> None:
    nav = set(NAV_PAGE.findall(MKDOCS_YML.read_text(encoding="utf-8")))
    on_disk = {str(p.relative_to(DOCS)) for p in pages()}
    assert on_disk - nav == set(), f"pages missing from the nav of mkdocs.yml: {on_disk - nav}"
    assert nav - on_disk == set(), f"mkdocs.yml's nav names missing pages: {nav - on_disk}"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A broken file link and a broken anchor are both reported; a good pair is not."""
    (tmp_path / "b.md").write_text("# Top\n\n## The `compact`, and more: yes\n", encoding="utf-8")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md#the-compact-and-more-yes) [ok](#here) [x](b.md#gone) [y](c.md)\n"
        "`[not a link](d.md)`\n\n```\n[nor this](e.md)\n```\n\n## Here\n",
        encoding="utf-8",
    )
    assert broken_links(page, root=tmp_path.resolve()) == [
        "b.md#gone: no heading #gone in b.md",
        "c.md: no file c.md",
    ]
