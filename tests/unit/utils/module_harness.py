"""Run a module's main() in-process against a ScriptedSession (the usual ansible unit-test pattern).

    run = ModuleRunner(monkeypatch, defaults={"api_token": TOKEN})
    result, session, sleeps = run(storagebox, {"name": "photos"}, [Call("GET", "/storage_boxes", ...).returns(...)])

For each run the runner patches the module args (``defaults`` + ``args``; an argument given as None is left out,
so an env fallback can be tested with ``{"api_token": None}``), ``exit_json``/``fail_json`` (they end the run
with the result, ``failed`` set either way), ``warn`` (warnings land in ``result["warnings"]``), the
``requests.Session`` the API client builds (the scripted session) and ``time.sleep`` (recorded in ``sleeps``,
never slept). It asserts the module failed exactly when ``fails`` says so and made every scripted call.

``mask_no_log=True`` masks no_log values in the result as Ansible does before printing it (for modules that
hand secrets to that masking); without it the result is what the module passed, so a test can assert that
the module itself never puts a secret there.

The fixtures ``run_hetzner`` and ``run_runpod`` (tests/unit/plugins/conftest.py) are runners with each
vendor's connection defaults.
"""

from __future__ import annotations

import contextlib
import json
import time
from types import ModuleType
from typing import Any, NamedTuple

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.parameters import remove_values
from ansible_collections.selfhost.immich.plugins.module_utils import _api
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call, ScriptedSession

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core 2.17 and 2.18 have no public helper: the same patch by hand
    from unittest import mock

    @contextlib.contextmanager
    def patch_module_args(args=None):
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()):
            yield


class ModuleExit(SystemExit):
    """exit_json or fail_json was called; ``result`` is what the module passed (``failed`` included)."""

    def __init__(self, result: dict) -> None:
        super().__init__(result.get("msg"))
        self.result = result


class ModuleRun(NamedTuple):
    result: dict
    session: ScriptedSession
    sleeps: list[float]


def _record_warning(self: basic.AnsibleModule, warning: str, **_: Any) -> None:
    self.__dict__.setdefault("test_warnings", []).append(warning)


class ModuleRunner:
    """Runs modules in-process; build one per test (it patches through ``monkeypatch``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, defaults: dict | None = None, mask_no_log: bool = False,
                 clear_env: tuple[str, ...] = ()) -> None:
        self.monkeypatch, self.defaults, self.mask_no_log = monkeypatch, dict(defaults or {}), mask_no_log
        for name in clear_env:  # the module sees only what the test gives it
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(basic.AnsibleModule, "exit_json", self._leave(failed=False))
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", self._leave(failed=True))
        monkeypatch.setattr(basic.AnsibleModule, "warn", _record_warning)

    def __call__(self, module: ModuleType, args: dict, calls: list[Call] = (), check_mode: bool = False,
                 fails: bool = False, session: ScriptedSession | None = None) -> ModuleRun:
        """``module.main()`` with ``args`` must make exactly ``calls`` (or those of ``session``)."""
        session = session or ScriptedSession(list(calls))
        sleeps: list[float] = []
        self.monkeypatch.setattr(_api.requests, "Session", lambda: session)
        self.monkeypatch.setattr(time, "sleep", sleeps.append)
        module_args = {k: v for k, v in dict(self.defaults, **args).items() if v is not None}
        module_args.update(_ansible_check_mode=check_mode, _ansible_diff=True)
        with patch_module_args(module_args), pytest.raises(ModuleExit) as left:
            module.main()
        result = left.value.result
        assert result["failed"] is fails, result
        session.assert_done()
        return ModuleRun(result, session, sleeps)

    def _leave(self, failed: bool):
        def leave(module: basic.AnsibleModule, msg: str | None = None, **result: Any) -> None:
            if msg is not None:
                result["msg"] = msg
            result = dict(result, failed=failed, warnings=list(module.__dict__.get("test_warnings", [])))
            if self.mask_no_log:  # what Ansible would print: values of no_log options and registered secrets
                result = remove_values(result, module.no_log_values)
            raise ModuleExit(result)
        return leave
