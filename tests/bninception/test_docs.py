"""The README fits a page, and no page, docstring or comment cites a document or anchor the repository lacks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITED = re.compile(r"\b((?:docs/)?[A-Za-z_-]+\.md)\b")
RUN_OUTPUTS = {"report.md", "lr.md"}  # pages a run writes, not documents of the repository


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def test_the_readme_fits_a_page() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_link_between_pages_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)} -> {target} (no such heading)")
    assert not broken, broken


def test_no_file_cites_a_document_the_repository_lacks() -> None:
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "Makefile", "Dockerfile"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    missing = set()
    for name in files:
        path = ROOT / name
        if not path.is_file():
            continue
        for cited in CITED.findall(path.read_text(errors="replace")):
            here = [path.parent / cited, ROOT / cited, ROOT / "docs" / cited]
            if cited not in RUN_OUTPUTS and not any(p.exists() for p in here):
                missing.add(f"{name}: {cited}")
    assert not missing, sorted(missing)
