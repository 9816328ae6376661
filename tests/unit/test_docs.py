"""The documentation holds together: every relative link in README.md and docs/*.md names a
file or directory of the repository (and, into Markdown, a heading that exists), and the
README stays short enough to read in two minutes."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 8000

# [text](target) and [text](target "title"); images too. Reference-style links are not used.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (links and headings there are not rendered)."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (letters,
    digits, spaces, hyphens and underscores kept), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' (numbered -1, -2, ... when repeated,
    as GitHub does) and explicit <a name/id>."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(path.read_text()):
        found.update(_HTML_ANCHOR.findall(line))
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code blocks and inline code."""
    targets: list[str] = []
    for line in _prose(path.read_text()):
        line = re.sub(r"`[^`]*`", "", line)
        targets.extend(_LINK.findall(line))
    return targets


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of ``path`` (a file of ``root``)."""
    root = root.resolve()
    problems: list[str] = []
    for target in links(path):
        if _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path.resolve()
        if not resolved.exists():
            problems.append(f"{target}: no such file")
            continue
        if root not in resolved.parents and resolved != root:
            problems.append(f"{target}: outside the repository")
            continue
        if anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_readme_is_short() -> None:
    size = len(README.read_text())
    assert size < README_LIMIT, f"README.md has {size} characters; move details into docs/"


def test_slug_matches_github() -> None:
    assert slug("Flux Kustomization and HelmRelease `spec.kubeConfig.secretRef`") == (
        "flux-kustomization-and-helmrelease-speckubeconfigsecretref"
    )
    assert slug("Crossplane v2, live (8 minutes)") == "crossplane-v2-live-8-minutes"
    assert slug("A real node: the image as pods, without a registry") == (
        "a-real-node-the-image-as-pods-without-a-registry"
    )


def test_checker_finds_a_broken_link(tmp_path: Path) -> None:
    """The checker itself: a missing file and a missing heading are both reported."""
    doc = tmp_path / "doc.md"
    (tmp_path / "other.md").write_text("# Present\n\n```\n# not a heading\n```\n")
    doc.write_text(
        "[a](other.md#present) [b](missing.md) [c](other.md#absent) [d](other.md#not-a-heading)\n"
        "`[e](ignored.md)` [f](https://example.com/x.md) [g](#here)\n\n## Here\n"
    )
    assert broken_links(doc, tmp_path) == [
        "missing.md: no such file",
        "other.md#absent: no heading #absent in other.md",
        "other.md#not-a-heading: no heading #not-a-heading in other.md",
    ]
