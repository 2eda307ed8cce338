"""The documentation stays true: docs/config.md is what flow/config.py generates, the README is short and starts
with the two commands, and every link between README.md and docs/*.md (with its #anchor) resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flow.config_reference import NOTES, class_comments, reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(((?:\.\./|docs/)?[\w./-]*?\.md)(#[\w-]+)?\)")


def test_config_reference_is_current():
    assert (DOCS / "config.md").read_text() == reference(), (
        "docs/config.md is out of date: run `.venv/bin/ftflow config --reference > docs/config.md`"
    )


def test_config_command_prints_the_reference(capsys):
    from flow.cli import main

    assert main(["config", "--reference"]) == 0
    assert capsys.readouterr().out == reference()


def test_every_note_belongs_to_a_key():
    keys = set(re.findall(r"^\| `([\w.<>]+)` \|", reference(), flags=re.M))
    assert set(NOTES) <= keys, sorted(set(NOTES) - keys)


def test_fields_pair_with_the_comments_above_and_beside_them():
    source = """
class C:
    a: int = 1  # beside
    # above, first line
    # and second
    b: int = 2
    c: tuple[int, ...] = field(
        default=(),
        metadata=rng(1),
    )  # at the end  # fmt: skip

    d: int = 3
"""
    assert class_comments(source)["C"] == {"a": "beside", "b": "above, first line and second", "c": "at the end",
                                           "d": ""}  # fmt: skip


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; details belong in docs/"
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## "))
    fence = [i for i, line in enumerate(lines[:first_section]) if line.startswith("```")]
    assert len(fence) >= 2, "README.md must open with a code block holding `make demo` and `make test`"
    commands = [line.split()[0:2] for line in lines[fence[0] + 1 : fence[1]] if line.strip()]
    assert [c for c in commands if c[0] == "make"] == [["make", "demo"], ["make", "test"]]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_links_between_the_pages_resolve(page):
    text = page.read_text()
    if page == README:
        assert LINK.search(text), "README.md links to no docs/*.md"
    for target, anchor in LINK.findall(text):
        path = (page.parent / target).resolve()
        assert path.is_file(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor[1:] in _anchors(path), f"{page.name} links to {target}{anchor}: no such heading"
