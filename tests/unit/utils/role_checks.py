"""Run a role's input checks for many cases in ONE ansible-playbook: every case is its own inventory host.

The real role runs in check mode against local-connection hosts, limited to its argument-spec validation (always
runs), the shared preflight and the role's own checks (tag ``<role>_validate``). One process for all cases instead
of one per case: the role tests' cost is Ansible's start-up, not the checks.

A case's variables are its host variables, as given (``None`` is a null value, not an unset variable).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]

PLAY = """\
- name: Check the role's input
  hosts: all
  gather_facts: false
  roles:
    - role: selfhost.immich.{role}
"""


@dataclass
class HostResult:
    recap: str  # the host's PLAY RECAP counters, e.g. "ok=3 changed=0 unreachable=0 failed=1 ..."
    messages: str  # the msg of every failed task of the host, whitespace-folded (Ansible folds long messages)

    @property
    def refused(self) -> bool:
        """Failed on a check, and nothing was (or would have been) changed before."""
        return "failed=1" in self.recap and "changed=0" in self.recap

    @property
    def passed(self) -> bool:
        return "failed=0" in self.recap and "unreachable=0" in self.recap


@dataclass
class CheckRun:
    output: str  # stdout + stderr of the whole run
    hosts: dict[str, HostResult]


def _fold(text: str) -> str:
    return " ".join(text.split())


def check_role(role: str, cases: dict[str, dict], work_dir: Path) -> CheckRun:
    """Run ``role``'s input checks once for every case (case name -> variables)."""
    python = sys.executable
    hosts = {}
    for case, variables in cases.items():
        hosts[case] = {**variables, "ansible_connection": "local", "ansible_python_interpreter": python}
    (work_dir / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (work_dir / "play.yml").write_text(PLAY.format(role=role))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_CONFIG": str(work_dir / "none.cfg"),  # not the repo's ansible.cfg (lab inventory)
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORKS": "20",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
    }
    result = subprocess.run(
        [str(Path(python).with_name("ansible-playbook")), "-i", str(work_dir / "inventory.yml"), "--check",
         "--tags", f"{role}_validate", str(work_dir / "play.yml")],
        cwd=work_dir, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    messages: dict[str, list[str]] = {case: [] for case in cases}
    task, error, in_error = "", "", False
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task, error = line[len("TASK ["):].rsplit("]", 1)[0], ""
        # ansible-core prints "[ERROR]: Task failed: Action failed: <msg>" above a failure, also for a no_log task
        # (the fatal line is then censored); the same message for several hosts is printed once.
        if line.startswith("[ERROR]: "):
            error, in_error = line.removeprefix("[ERROR]: ").removeprefix("Task failed: ").removeprefix(
                "Action failed: "), True
            continue
        if in_error:
            if line.startswith("Origin: ") or not line.strip():
                in_error = False
            else:
                error += " " + line
            continue
        # "fatal: [case]: FAILED! => {...}" or, for a looped check, "failed: [case] (item=...) => {...}".
        failure = re.match(r"^(?:fatal: \[([^]]+)\]: FAILED!|failed: \[([^]]+)\] \(item=.*?\)) => (\{.*\})$", line)
        if not failure or (failure.group(1) or failure.group(2)) not in messages:
            continue
        answer = json.loads(failure.group(3))
        msg = answer.get("msg", "")
        text = " ".join(map(str, msg)) if isinstance(msg, list) else str(msg)
        if "censored" in answer:  # a no_log check: the user reads the [ERROR] line above it (or the task's name)
            text = error or task
        messages[failure.group(1) or failure.group(2)].append(text)
    found = {}
    for case in cases:
        recap = re.search(rf"^{re.escape(case)}\s+:\s+(.*)$", output, re.M)
        found[case] = HostResult(recap.group(1) if recap else "no recap", _fold(" ".join(messages[case])))
    return CheckRun(output, found)


def assert_refused(run: CheckRun, case: str, expected: str) -> None:
    """The case failed on a check before any change, with a message containing ``expected``."""
    host = run.hosts[case]
    assert host.refused, f"{case}: not refused ({host.recap})\n{run.output[-3000:]}"
    assert _fold(expected) in host.messages, f"{case}: message lacks {expected!r}: {host.messages[:600]}"
