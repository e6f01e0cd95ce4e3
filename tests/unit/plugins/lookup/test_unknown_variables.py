"""The lookup selfhost.immich.unknown_variables: which defined <role>_* names a role does not know, and what it says.

The preflight role fails a run on its answer (end to end: the `typo` cases of the role bad-input corpus); here the
lookup runs in-process against a role laid out in a temporary directory and against the collection's own roles.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import lookup_loader
from ansible.template import Templar
from ansible_collections.selfhost.immich.plugins.lookup.unknown_variables import known_names
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust_as_template

ROLES = Path(__file__).resolve().parents[4] / "roles"

# A role "demo" declaring names in every place the lookup reads.
DEMO = {
    "meta/argument_specs.yml": """\
argument_specs:
  main:
    options:
      demo_version: {type: str}
      demo_password: {type: str, no_log: true}
  ssh:
    options:
      demo_ssh_alias: {type: str}
""",
    "defaults/main.yml": "demo_port: 8080\n",
    "vars/main.yml": "demo_release_dir: /opt/demo\n",
    "vars/Debian.yml": "demo_packages: [curl]\n",
    "tasks/main.yml": """\
- name: Read the state
  ansible.builtin.stat:
    path: /etc/demo
  register: demo_state
- name: Derive
  ansible.builtin.set_fact:
    demo_derived: 1
- name: Derive (short form)
  set_fact:
    demo_short: 1
- name: A block
  vars:
    demo_block_var: 1
  block:
    - name: Inner
      ansible.builtin.debug:
        msg: x
      vars:
        demo_inner_var: 1
  rescue:
    - name: Rescue
      ansible.builtin.set_fact:
        demo_rescued: true
  always:
    - name: Always
      ansible.builtin.command: "true"
      register: demo_always_result
""",
    "handlers/main.yml": """\
- name: Restart demo
  ansible.builtin.command: "true"
  register: demo_restart_result
""",
}


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    for name, text in DEMO.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def lookup():
    """The lookup as Ansible loads it (by its name, with its documented options)."""
    return lookup_loader.get("selfhost.immich.unknown_variables")


def unknown(names, role="demo", **options):
    """What the lookup answers when ``names`` are defined (each with a dummy value)."""
    return lookup().run([role], variables=dict.fromkeys(names, "value"), **options)


pytestmark = pytest.mark.usefixtures("collection_plugins")


def test_every_place_a_role_declares_a_name_is_read(demo):
    assert known_names(demo) == {
        "demo_version", "demo_password", "demo_ssh_alias",  # every entry point's options
        "demo_port", "demo_release_dir", "demo_packages",  # defaults/*.yml and vars/*.yml
        "demo_state", "demo_always_result", "demo_restart_result",  # register in tasks (also in blocks) and handlers
        "demo_derived", "demo_short", "demo_rescued",  # set_fact keys, both spellings, also in rescue
        "demo_block_var", "demo_inner_var",  # block and task vars
    }  # fmt: skip


def test_known_names_pass(demo):
    assert unknown(sorted(known_names(demo)), role_dir=str(demo)) == []


def test_as_the_preflight_role_calls_it(demo):
    # query() in a template, as roles/preflight/tasks/main.yml does: the names are the template's variables.
    variables = {"demo_port": 1, "demo_prot": 2, "preflight_role": "demo", "demo__dir": str(demo)}
    templar = Templar(loader=DataLoader(), variables=variables)
    answer = templar.template(
        trust_as_template("{{ query('selfhost.immich.unknown_variables', preflight_role, role_dir=demo__dir) }}")
    )
    assert answer == ["demo_prot is not a variable of selfhost.immich.demo - did you mean demo_port?"]


def test_a_typo_names_the_closest_known_variable(demo):
    assert unknown(["demo_verison", "demo_version"], role_dir=str(demo)) == [
        "demo_verison is not a variable of selfhost.immich.demo - did you mean demo_version?"
    ]


def test_a_name_like_no_known_one_points_at_the_readme(demo):
    assert unknown(["demo_zzzzzzzzzzzzzzzzzzzzzz"], role_dir=str(demo)) == [
        "demo_zzzzzzzzzzzzzzzzzzzzzz is not a variable of selfhost.immich.demo (no similar name; see the role's README)"
    ]


def test_one_message_per_unknown_name_sorted(demo):
    assert unknown(["demo_prot", "demo_aaaaaaaaaaaaaaaaaaaa", "demo_prot"], role_dir=str(demo)) == [
        "demo_aaaaaaaaaaaaaaaaaaaa is not a variable of selfhost.immich.demo (no similar name; see the role's README)",
        "demo_prot is not a variable of selfhost.immich.demo - did you mean demo_port?",
    ]


def test_scratch_names_and_other_prefixes_are_not_checked(demo):
    names = ["demo__checked", "demo__anything_else", "demox_port", "other_port", "demo", "ansible_facts"]
    assert unknown(names, role_dir=str(demo)) == []


def test_a_role_directory_without_names_says_so(tmp_path):
    assert unknown(["demo_port"], role_dir=str(tmp_path)) == [
        f"preflight: no variable names found under {tmp_path} (meta/argument_specs.yml missing?)"
    ]


def test_unreadable_yaml_is_skipped_not_fatal(demo):
    (demo / "vars" / "broken.yml").write_text("demo_broken: [unclosed\n")
    (demo / "tasks" / "vault.yml").write_text("- name: x\n  vars:\n    demo_vaulted: !vault |\n      $ANSIBLE\n")
    assert "demo_broken" not in known_names(demo)
    assert unknown(["demo_port"], role_dir=str(demo)) == []


def test_only_names_are_read_never_values(demo):
    class NamesOnly(dict):
        def __getitem__(self, key):
            raise AssertionError(f"the value of {key} was read")

        def get(self, key, default=None):
            raise AssertionError(f"the value of {key} was read")

        def values(self):
            raise AssertionError("values were read")

        def items(self):
            raise AssertionError("values were read")

    variables = NamesOnly(dict.fromkeys(["demo_port", "demo_pasword"], "s3cret"))
    assert lookup().run(["demo"], variables=variables, role_dir=str(demo)) == [
        "demo_pasword is not a variable of selfhost.immich.demo - did you mean demo_password?"
    ]


@pytest.mark.parametrize("terms", [[], ["demo", "other"], [""], [3]])
def test_exactly_one_role_name(demo, terms):
    with pytest.raises(AnsibleLookupError, match="exactly one role name"):
        lookup().run(terms, variables={}, role_dir=str(demo))


@pytest.mark.parametrize(
    ("role", "typo", "meant"),
    [
        ("docker", "docker_instal_source", "docker_install_source"),
        ("sshfs_storagebox", "sshfs_storagebox_mount_pth", "sshfs_storagebox_mount_path"),
        ("traefik", "traefik_dashbord_enabled", "traefik_dashboard_enabled"),
        ("runpod_endpoint", "runpod_endpoint_workers_mx", "runpod_endpoint_workers_max"),
        ("immich", "immich_versoin", "immich_version"),
        ("restic", "restic_pasword", "restic_password"),
    ],
)
def test_the_collections_roles_by_default(role, typo, meant):
    # Without role_dir the lookup reads the collection's roles/<role>; all of a role's own names pass.
    role_dir = ROLES / role
    own = known_names(role_dir)
    assert meant in own and typo not in own
    assert unknown([*own, typo], role=role) == [
        f"{typo} is not a variable of selfhost.immich.{role} - did you mean {meant}?"
    ]
