"""Fixtures of the plugin unit tests: in-process module runners with each vendor's connection defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
from ansible_collections.selfhost.immich.tests.unit.utils import hetzner_calls, runpod_calls
from ansible_collections.selfhost.immich.tests.unit.utils.module_harness import ModuleRunner


@pytest.fixture
def run_hetzner(monkeypatch: pytest.MonkeyPatch) -> ModuleRunner:
    """run_hetzner(module, args, calls, check_mode=False, fails=False, session=None) -> (result, session, sleeps).

    The module talks to hetzner_calls.API_URL; its result is checked as the module passed it.
    """
    return ModuleRunner(monkeypatch, hetzner_calls.MODULE_DEFAULTS, clear_env=hetzner_calls.ENV)


@pytest.fixture
def run_runpod(monkeypatch: pytest.MonkeyPatch) -> ModuleRunner:
    """run_runpod(module, args, calls, check_mode=False, fails=False) -> (result, session, sleeps).

    The module talks to the default RunPod URL. Its result is checked as Ansible prints it (no_log values
    masked), because the RunPod modules hand secret env values to that masking (_runpod.public_view).
    """
    return ModuleRunner(monkeypatch, runpod_calls.MODULE_DEFAULTS, mask_no_log=True, clear_env=runpod_calls.ENV)


@pytest.fixture
def collection_plugins():
    """Ansible's collection loader, as ansible-playbook installs it: the plugin loaders then find selfhost.immich's
    lookups and filters by their names, and templates can call them. The session imported ansible_collections.* the
    plain way (pyproject's pythonpath): those modules step aside while the loader imports its own, and come back."""
    plain = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "ansible_collections"}
    _AnsibleCollectionFinder(paths=[str(Path(__file__).resolve().parents[3] / ".collections")])._install()
    try:
        yield
    finally:
        _AnsibleCollectionFinder._remove()
        for name in [name for name in sys.modules if name.split(".")[0] == "ansible_collections"]:
            del sys.modules[name]
        sys.modules.update(plain)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hetzner: Hetzner Storage Box tests (select with -k hetzner or -m hetzner)")
