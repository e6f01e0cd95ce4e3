"""Every regular expression the roles and playbooks validate with is anchored with \\A and \\Z, never ^ and $.

In Python's `re` (Ansible's match/search tests and regex filters), `$` also matches before a trailing newline, so
`value is match('^[a-z]+$')` lets "abc\\n" through, and the newline then lands in a rendered file (a unit, an .env,
a YAML key). `\\Z` matches only at the very end. A pattern with `^`/`$` is allowed only where it parses command
output line by line (multiline=True), which is not a validation.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FILES = sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("roles/*/vars/*.yml"),
                *REPO.glob("roles/*/handlers/*.yml"), *REPO.glob("playbooks/*.yml")])

# A regex test or filter, then its pattern as a quoted literal: match('...'), search("..."), regex_search('...'),
# select('match', '...'), reject('search', '...'), and a role's own pattern tables (`pattern: '...'`).
CALL = re.compile(
    r"""(?:\b(?:match|search|regex_search|regex_findall|fullmatch)\s*\(\s*|['"](?:match|search|regex)['"]\s*,\s*)"""
    r"""(?P<q>['"])(?P<pattern>(?:\\.|(?!(?P=q)).)*)(?P=q)(?P<rest>[^\n]*)""")
TABLE = re.compile(r"""^\s*pattern:\s*(?P<q>['"])(?P<pattern>(?:\\.|(?!(?P=q)).)*)(?P=q)""", re.M)


def _caret_or_dollar(pattern: str) -> bool:
    """True when the pattern uses ^ or $ as an anchor (not escaped, not a negated class's ^)."""
    unescaped = re.sub(r"\\.", "", pattern)
    return bool(re.search(r"(?<!\[)\^", unescaped) or "$" in unescaped)


def anchors(text: str) -> list[str]:
    """The validation patterns in a file's text that are anchored with ^ or $."""
    found = [m.group("pattern") for m in CALL.finditer(text)
             if _caret_or_dollar(m.group("pattern")) and "multiline=True" not in m.group("rest")]
    found += [m.group("pattern") for m in TABLE.finditer(text) if _caret_or_dollar(m.group("pattern"))]
    return found


@pytest.mark.parametrize(("text", "expected"), [
    ("that: x is match('^[a-z]+$')", ["^[a-z]+$"]),
    ("that: x is match('\\A[a-z]+\\Z')", []),
    ("that: x | select('match', '^/') | list", ["^/"]),
    ('that: x is search("[^@]+@")', []),
    ("that: out is search('^Version: 1$', multiline=True)", []),
    ("  pattern: '^[0-9]+$'", ["^[0-9]+$"]),
    ("that: x is match('\\$HOME')", []),
    ("that: out is search('^v' ~ (version | regex_escape) ~ '$', multiline=True)", []),
])
def test_the_finder_finds_what_it_should(text, expected):
    assert anchors(text) == expected


def test_the_roles_validate_with_patterns():
    assert sum(len(CALL.findall(path.read_text())) for path in FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_validation_is_anchored_with_caret_or_dollar(path):
    found = anchors(path.read_text())
    assert not found, f"{path.relative_to(REPO)}: use \\A...\\Z instead of ^...$ in {found}"
