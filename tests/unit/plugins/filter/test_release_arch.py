"""The filter selfhost.immich.release_arch (the collection's one architecture map) and the roles that use it.

Each role that downloads release assets derives its architecture from the facts through this filter, without
depending on another role having run first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader
from ansible.template import Templar
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust_as_template

ROLES = Path(__file__).resolve().parents[4] / "roles"
# role -> its variable holding the architecture (a default derived from the facts)
ARCH_VARIABLES = {"docker": "docker_apt_arch", "traefik": "traefik_arch", "restic": "restic_arch"}

pytestmark = pytest.mark.usefixtures("collection_plugins")


def template(text: str, **variables):
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(text))


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [("aarch64", "arm64"), ("arm64", "arm64"), ("x86_64", "amd64"), ("amd64", "amd64"),
     ("armv7l", ""), ("i386", ""), ("ppc64le", ""), ("", ""), ("AARCH64", "")],
)  # fmt: skip
def test_the_one_map(architecture, expected):
    assert template("{{ arch | selfhost.immich.release_arch }}", arch=architecture) == expected


@pytest.mark.parametrize("value", [None, 64, ["aarch64"], {"architecture": "aarch64"}])
def test_anything_but_an_architecture_name_gives_an_empty_string(value):
    assert filter_loader.get("selfhost.immich.release_arch").j2_function(value) == ""


@pytest.mark.parametrize("role", sorted(ARCH_VARIABLES))
@pytest.mark.parametrize(
    ("facts", "expected"),
    [({"architecture": "aarch64"}, "arm64"), ({"architecture": "x86_64"}, "amd64"), ({"architecture": "armv7l"}, ""),
     ({}, "")],
)  # fmt: skip
def test_each_role_derives_its_architecture_from_the_facts_alone(role, facts, expected):
    # The role's default templated with nothing but the facts (no other role's variable): before the facts are
    # gathered (argument validation templates the defaults first) it is an empty string, not an error.
    name = ARCH_VARIABLES[role]
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    assert name in specs["argument_specs"]["main"]["options"], f"{name} is not documented in {role}'s argument specs"
    assert "selfhost.immich.release_arch" in defaults[name]
    assert template(defaults[name], ansible_facts=facts) == expected


def test_no_role_reads_another_roles_architecture():
    # preflight_arch (a set_fact of the preflight role) is gone: nothing may read it any more.
    readers = [str(path.relative_to(ROLES)) for path in ROLES.rglob("*") if path.is_file()
               and path.suffix in (".yml", ".j2") and "preflight_arch" in path.read_text()]  # fmt: skip
    assert readers == []
