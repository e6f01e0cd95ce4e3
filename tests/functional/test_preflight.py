"""The shared preflight role in real plays: the platform is checked once per host, the variable check once per role.

Local-connection hosts with gather_facts off. A host's platform is either this machine's (the role gathers it) or
facts a two-line module of the test returns (the role gathers only when the facts are missing), so an unsupported
platform can be tried here. The typo messages themselves are the role bad-input corpus's `typo` cases and the
lookup's unit tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ASSERT = "selfhost.immich.preflight : Check that the host runs a supported platform"
TYPOS = "selfhost.immich.preflight : Refuse unknown variables with the role's prefix"
# Returns the given facts as a setup module would, so Ansible keeps them as the host's facts.
FAKE_PLATFORM = """\
from ansible.module_utils.basic import AnsibleModule
module = AnsibleModule({"facts": {"type": "dict", "required": True}})
module.exit_json(changed=False, ansible_facts=module.params["facts"])
"""
PLAY = """\
- name: Two roles' preflights in one play, then one in a second play
  hosts: all
  gather_facts: false
  tasks:
    - name: Give the host the platform of the case
      fake_platform:
        facts: "{{ fake_facts }}"
      when: fake_facts is defined

    - name: Preflight of each role
      ansible.builtin.include_role:
        name: selfhost.immich.preflight
      vars:
        preflight_role: "{{ item }}"
      loop: [docker, traefik]
- name: A later play
  hosts: all
  gather_facts: false
  tasks:
    - name: Preflight of restic
      ansible.builtin.include_role:
        name: selfhost.immich.preflight
      vars:
        preflight_role: restic
"""


def facts(distribution: str, version: str, architecture: str) -> dict:
    """What `setup: gather_subset: [min]` would return for such a host (the keys the preflight reads)."""
    return {
        "ansible_distribution": distribution,
        "ansible_distribution_version": version,
        "ansible_distribution_major_version": version.split(".")[0],
        "ansible_architecture": architecture,
    }


def run(tmp_path: Path, hosts: dict[str, dict | None]) -> tuple[str, dict[str, dict[str, list[str]]]]:
    """Run PLAY on ``hosts`` (name -> its facts, or None to let the role gather this machine's).

    Returns the output and, per host, per task name, the result words in order ("ok", "skipping", "fatal", ...)."""
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "fake_platform.py").write_text(FAKE_PLATFORM)
    inventory = {}
    for name, given in hosts.items():
        inventory[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        if given is not None:
            inventory[name]["fake_facts"] = given
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": inventory}}))
    (tmp_path / "play.yml").write_text(PLAY)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_LIBRARY": str(tmp_path / "library"),
    }
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "inventory.yml", "play.yml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    results: dict[str, dict[str, list[str]]] = {name: {} for name in hosts}
    task = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].rsplit("]", 1)[0]
        found = re.match(r"^(ok|skipping|changed|fatal|failed): \[([^]]+)\]", line)
        if found and found.group(2) in results:
            results[found.group(2)].setdefault(task, []).append(found.group(1))
    return output, results


def test_the_platform_is_checked_once_per_host_the_variables_once_per_role(tmp_path):
    output, results = run(tmp_path, {"gathered": None, "given": facts("Ubuntu", "24.04", "aarch64")})
    for host in ("gathered", "given"):
        # three roles over two plays: the typo check for each, the platform only for the first
        assert results[host][TYPOS] == ["ok", "ok", "ok"], output[-3000:]
        assert results[host][ASSERT] == ["ok", "skipping", "skipping"], output[-3000:]
    assert re.search(r"^gathered\s+:.*failed=0", output, re.M) and re.search(r"^given\s+:.*failed=0", output, re.M)


def test_an_unsupported_platform_is_refused_with_what_the_host_runs(tmp_path):
    output, results = run(tmp_path, {
        "fedora": facts("Fedora", "40", "x86_64"),
        "debian11": facts("Debian", "11", "x86_64"),
        "armhf": facts("Debian", "12", "armv7l"),
        "ubuntu2004": facts("Ubuntu", "20.04", "aarch64"),
    })  # fmt: skip
    for host, platform in [("fedora", "Fedora 40 (x86_64)"), ("debian11", "Debian 11 (x86_64)"),
                           ("armhf", "Debian 12 (armv7l)"), ("ubuntu2004", "Ubuntu 20.04 (aarch64)")]:  # fmt: skip
        assert results[host][ASSERT] == ["fatal"], output[-3000:]
        message = (f"selfhost.immich.docker supports Ubuntu 22.04/24.04 and Debian 12/13 on arm64/amd64, not "
                   f"{platform}.")  # fmt: skip
        assert message in " ".join(output.split()), f"{host}: {message!r} not in\n{output[-3000:]}"
