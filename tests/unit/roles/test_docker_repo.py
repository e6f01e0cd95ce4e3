"""The docker role's deb822 repository file, rendered with the role's own task vars for each target.

Docker's repository is unreachable here, so Molecule exercises the distro path; this renders the
official path's .sources file exactly as the role would (its task vars, its vars/main.yml, its template)
for every supported distribution/architecture and checks what apt will read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.selfhost.immich.plugins.filter.release_arch import release_arch
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import load_trusted, trust_as_template

ROLE = Path(__file__).resolve().parents[3] / "roles" / "docker"


def _render(facts: dict, **overrides) -> str:
    defaults = load_trusted(ROLE / "defaults" / "main.yml")
    role_vars = load_trusted(ROLE / "vars" / "main.yml")
    tasks = load_trusted(ROLE / "tasks" / "official.yml")
    repo_task = next(t for t in tasks if "docker.sources.j2" in str(t.get("selfhost.immich.file_set", {})))
    # docker_apt_arch's default is the collection filter release_arch of the facts (tests/unit/plugins/filter checks
    # that the default calls it; a plain Templar here knows no collection filters).
    arch = {"docker_apt_arch": release_arch(facts["architecture"])}
    variables = {**defaults, **role_vars, **arch, **overrides, "ansible_facts": facts}
    templar = Templar(loader=DataLoader(), variables=variables)
    variables.update({k: templar.template(v) for k, v in repo_task["vars"].items()})
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template((ROLE / "templates" / "docker.sources.j2").read_text()))


def _fields(text: str) -> dict:
    return dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize(
    ("distribution", "release", "arch", "uri", "apt_arch"),
    [
        ("Ubuntu", "jammy", "aarch64", "https://download.docker.com/linux/ubuntu", "arm64"),
        ("Ubuntu", "noble", "aarch64", "https://download.docker.com/linux/ubuntu", "arm64"),
        ("Debian", "bookworm", "aarch64", "https://download.docker.com/linux/debian", "arm64"),
        ("Debian", "trixie", "x86_64", "https://download.docker.com/linux/debian", "amd64"),
    ],
)
def test_sources_file_per_target(distribution, release, arch, uri, apt_arch):
    facts = {"distribution": distribution, "distribution_release": release, "architecture": arch}
    text = _render(facts)
    assert text.startswith("# Managed by selfhost.immich")
    assert _fields(text) == {
        "Types": "deb",
        "URIs": uri,
        "Suites": release,
        "Components": "stable",
        "Architectures": apt_arch,
        "Signed-By": "/etc/apt/keyrings/docker.asc",
    }


def test_mirror_and_channel_are_variables():
    facts = {"distribution": "Debian", "distribution_release": "trixie", "architecture": "aarch64"}
    fields = _fields(_render(facts, docker_apt_repo_url="http://mirror.lab/docker", docker_apt_channel="test"))
    assert fields["URIs"] == "http://mirror.lab/docker/debian"
    assert fields["Components"] == "test"


def _key_url(facts: dict, **overrides) -> str:
    defaults = load_trusted(ROLE / "defaults" / "main.yml")
    tasks = load_trusted(ROLE / "tasks" / "official.yml")
    key_task = next(t for t in tasks if "ansible.builtin.get_url" in t)
    templar = Templar(loader=DataLoader(), variables={**defaults, **overrides, "ansible_facts": facts})
    return templar.template(key_task["ansible.builtin.get_url"]["url"])


def test_key_url_follows_the_distribution():
    assert _key_url({"distribution": "Ubuntu"}) == "https://download.docker.com/linux/ubuntu/gpg"
    assert _key_url({"distribution": "Debian"}, docker_apt_repo_url="http://m/d") == "http://m/d/debian/gpg"
    assert _key_url({"distribution": "Debian"}, docker_apt_key_url="http://k/key.asc") == "http://k/key.asc"
