"""Immich's PostgreSQL container has one name: the immich role's output immich_db_container.

The compose file the role renders creates it; the role's upgrade dump, restic's dump (wired in
playbooks/vars/stack.yml) and playbooks/restore.yml's replay all reach it by that variable, never by a copy.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import load_trusted, trust, trust_as_template

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "immich"


def immich_variables(**overrides) -> dict:
    return {**load_trusted(ROLE / "defaults" / "main.yml"), **load_trusted(ROLE / "vars" / "main.yml"),
            "immich_domain": "photos.example.org", "immich_ml_urls": [], **overrides}


def compose_container(variables: dict) -> str:
    templar = Templar(loader=DataLoader(), variables=variables)
    compose = yaml.safe_load(templar.template(trust_as_template((ROLE / "templates" / "compose.yml.j2").read_text())))
    return compose["services"]["database"]["container_name"]


def test_restic_and_restore_reach_the_container_the_compose_file_creates():
    name = "immich_db_renamed"  # as if the role's output changed: every user must follow it
    variables = immich_variables(immich_db_container=name)
    assert compose_container(variables) == name
    stack = load_trusted(REPO / "playbooks" / "vars" / "stack.yml")
    restic_defaults = load_trusted(REPO / "roles" / "restic" / "defaults" / "main.yml")
    templar = Templar(loader=DataLoader(), variables={**variables, **restic_defaults, **stack})
    assert templar.template(stack["restic_db_container"]) == name
    assert name in templar.template(restic_defaults["restic_dump_command"])

    # restore.yml loads the role's outputs (vars_files): it follows them, and by default finds the real one.
    play = yaml.safe_load((REPO / "playbooks" / "restore.yml").read_text())[0]
    outputs = {}
    for path in play["vars_files"]:
        outputs.update(load_trusted(REPO / "playbooks" / path))
    for container, expected in ((outputs["immich_db_container"], compose_container(immich_variables())),
                                (name, name)):
        templar = Templar(loader=DataLoader(), variables={**outputs, "immich_db_container": container,
                                                          **trust(play["vars"])})
        assert templar.template(trust(play["vars"]["restore_psql_command"]))[3] == expected
