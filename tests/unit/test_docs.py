"""The README and docs/: short README, every page linked, no link leaving the repository or
missing its target, and every `xmodseg` command they show run by a test or by the workflow."""

from __future__ import annotations

import re

from tests.conftest import REPO

PAGES = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces -> hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", path.read_text(), re.M)}


def _code_lines(text: str) -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    linked = {m for m in LINK.findall(readme)}
    for page in PAGES:
        assert any(link.split("#")[0] == f"docs/{page.name}" for link in linked), f"README does not link docs/{page.name}"


def test_every_local_link_stays_in_the_repository_and_finds_its_target():
    for doc in [REPO / "README.md", *PAGES]:
        for link in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+://", link):
                continue
            target, _, anchor = link.partition("#")
            path = (doc.parent / target).resolve() if target else doc
            assert path.is_relative_to(REPO), f"{doc.name}: {link} leaves the repository"
            assert path.exists(), f"{doc.name}: {link} does not exist"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{doc.name}: no heading #{anchor} in {path.name}"


def test_every_xmodseg_command_shown_is_run_by_a_test_or_the_workflow():
    from xmodseg.cli import build_parser

    verbs = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py") if p.name != "test_docs.py")
    rules = "\n".join(p.read_text() for p in (REPO / "workflow").rglob("*.smk"))
    shown = set()
    for doc in [REPO / "README.md", *PAGES]:
        for line in _code_lines(doc.read_text()):
            shown |= set(re.findall(r"(?:^|[;&|(] *)xmodseg ([a-z][a-z-]*)", line))
    assert {"init-dataset", "check-data", "predict", "explain", "audit"} <= shown
    for verb in sorted(shown):
        assert verb in verbs, f"the docs show `xmodseg {verb}`, which is not a command"
        run = re.search(rf"""["']{re.escape(verb)}["']|xmodseg {re.escape(verb)}\\b""", tests) or f"xmodseg {verb} " in rules
        assert run, f"`xmodseg {verb}` is shown in the docs but no test or rule runs it"
