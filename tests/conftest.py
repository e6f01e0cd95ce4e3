"""Make the checkout importable as ansible_collections.selfhost.immich (pyproject.toml puts .collections on the
path), and turn a missing vendor spec into one line that says how to provide it."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = REPO / ".collections" / "ansible_collections" / "selfhost" / "immich"

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(REPO, LINK.parent), LINK)
    # In a fresh clone the namespace package ansible_collections (the `ansible` package ships one) may have been
    # imported before .collections existed: let it see the new portion.
    importlib.invalidate_caches()
    namespace = sys.modules.get("ansible_collections")
    portion = str(LINK.parents[2])
    if namespace is not None and portion not in list(namespace.__path__):
        namespace.__path__.append(portion)


def _one_line_if_specs_missing():
    from ansible_collections.selfhost.immich.tests.fakes.contract import ContractsMissing  # after the link exists

    try:
        return (yield)
    except ContractsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _one_line_if_specs_missing())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _one_line_if_specs_missing())
