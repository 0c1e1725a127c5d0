"""The documentation stands alone: every relative link in README.md, CHANGELOG.md and docs/*.md
reaches a file of the repository (and a heading, when it names one), the README stays an overview
(at most 250 lines) that links every page of docs/, and no file of the repository cites a note
outside it. Pure Python and fast: no git, no subprocess, no network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = sorted([README, REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md")])
README_MAX_LINES = 250

# Notes that live outside the repository and must never be cited from it. Spelt in pieces so that
# this file does not cite them either.
OUTSIDE_NOTES = (
    "../" + "shared",
    *(f"{n}.md" for n in ("DESIGN", "ENVIRONMENT", "COINCAP", "STYLE")),
)
OUTSIDE = re.compile("|".join(map(re.escape, OUTSIDE_NOTES)))
# What is not the repository's own text: version control, the venv, caches, local state and
# build output (.gitignore), and the developer's secrets.
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules"}
SKIP_PATHS = {
    "build",
    "data",
    "logs",
    "dbt_project/target",
    "dbt_project/logs",
    "dbt_project/dbt_packages",
    "tests/artifacts",
}
SKIP_FILES = {".env"}

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+).*?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline and reference link outside code."""
    found = []
    for number, line in prose_lines(path.read_text()):
        line = INLINE_CODE.sub("", line)
        found += [(number, m.group(1)) for m in INLINE_LINK.finditer(line)]
        if m := REFERENCE.match(line):
            found.append((number, m.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text()):
        if m := HEADING.match(line):
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken(page: Path, target: str) -> str | None:
    """Why `target` (a link in `page`) does not resolve, or None when it does."""
    if EXTERNAL.match(target):
        return None  # http(s), mailto: not checked here (no network)
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / file_part).resolve() if file_part else page
    if not dest.exists():
        return f"{target}: no such file"
    if REPO not in (dest, *dest.parents):
        return f"{target}: outside the repository"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert page.exists(), page
    problems = [
        f"{page.relative_to(REPO)}:{number}: {why}"
        for number, target in links(page)
        if (why := broken(page, target))
    ]
    assert not problems, "\n".join(problems)


def test_the_link_checker_sees_what_it_should():
    """The checker itself: links in code are ignored, anchors follow GitHub's rules."""
    assert (
        slug("`coincap-elt status`: the pipeline's state")
        == "coincap-elt-status-the-pipelines-state"
    )
    assert slug("0.6.0 (unreleased)") == "060-unreleased"
    assert slug("Containers: Docker in production, podman in tests") == (
        "containers-docker-in-production-podman-in-tests"
    )
    readme_links = [target for _, target in links(README)]
    assert "docs/operations.md" in readme_links
    assert any(target.startswith("https://") for target in readme_links)
    assert anchors(README) >= {"configuration", "quick-start"}


def test_readme_is_an_overview_that_links_every_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/"
    )
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for _, target in links(README)
        if not EXTERNAL.match(target)
    }
    unlinked = [
        str(page.relative_to(REPO)) for page in PAGES if page != README and page not in linked
    ]
    assert not unlinked, f"README.md does not link {unlinked}"


def repository_files() -> list[Path]:
    """The repository's own files: what `git ls-files` would list in a normal checkout."""
    files = []
    for root, dirs, names in os.walk(REPO):
        here = Path(root)
        rel = here.relative_to(REPO).as_posix()
        dirs[:] = [
            d
            for d in dirs
            if d not in SKIP_DIRS
            and not d.endswith(".egg-info")
            and (d if rel == "." else f"{rel}/{d}") not in SKIP_PATHS
        ]
        files += [here / n for n in names if n not in SKIP_FILES and not n.endswith(".pyc")]
    return files


def test_nothing_cites_a_note_outside_the_repository():
    cited = []
    for path in repository_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if OUTSIDE.search(line):
                cited.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not cited, "cite the project's own docs (docs/) instead:\n" + "\n".join(cited)
