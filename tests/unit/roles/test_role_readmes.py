"""Every role's README variable section is generated from its meta/argument_specs.yml, never kept by hand.

The section sits between the two markers below. The test renders the table from the spec and compares; after
changing a spec, regenerate with

    SELFHOST_UPDATE_READMES=1 pytest -p no:cacheprovider tests/unit/roles/test_role_readmes.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
BEGIN = "<!-- BEGIN argument_specs: generated from meta/argument_specs.yml, do not edit -->"
END = "<!-- END argument_specs -->"
# Roles whose README must carry the generated section (a role added later joins this list once its README has it).
REQUIRED = ["docker", "preflight", "runpod_endpoint", "sshfs_storagebox", "traefik"]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(option: dict) -> str:
    if option.get("required"):
        return "**required**"
    if "default" not in option:
        return ""
    value = option["default"]
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "`" + _cell(shown).replace("`", "'") + "`"


def _description(option: dict) -> str:
    text = option.get("description", "")
    if isinstance(text, list):
        text = " ".join(text)
    if option.get("choices"):
        text += " Choices: " + ", ".join(f"`{c}`" for c in option["choices"]) + "."
    if option.get("no_log"):
        text += " Secret (no_log): keep it in the vault."
    return _cell(text)


def render(spec_file: Path) -> str:
    specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
    lines = [BEGIN, ""]
    seen: dict[int, str] = {}
    for entry, spec in specs.items():
        options = spec.get("options") or {}
        lines.append(f"### Entry point `{entry}`")
        lines.append("")
        lines.append(_cell(spec.get("short_description", "")))
        lines.append("")
        if id(options) in seen:  # the same options (a YAML alias) as an earlier entry point
            lines.append(f"Options: the same as `{seen[id(options)]}`.")
            lines.append("")
            continue
        seen[id(options)] = entry
        lines.append("| variable | type | default | description |")
        lines.append("|---|---|---|---|")
        for name, option in options.items():
            kind = option.get("type", "str")
            if kind == "list" and option.get("elements"):
                kind = f"list of {option['elements']}"
            lines.append(f"| `{name}` | {kind} | {_default(option)} | {_description(option)} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _roles() -> list[str]:
    found = {p.parent.parent.name for p in ROLES.glob("*/meta/argument_specs.yml")}
    marked = {r for r in found if BEGIN in (ROLES / r / "README.md").read_text(errors="replace")
              if (ROLES / r / "README.md").exists()}
    return sorted(set(REQUIRED) | marked)


@pytest.mark.parametrize("role", _roles())
def test_readme_variable_section_is_generated_from_the_argument_specs(role):
    readme = ROLES / role / "README.md"
    assert readme.exists(), f"roles/{role}/README.md is missing"
    text = readme.read_text()
    assert BEGIN in text and END in text, f"roles/{role}/README.md lacks the generated variable section markers"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    expected = render(ROLES / role / "meta" / "argument_specs.yml")
    current = BEGIN + rest.split(END, 1)[0] + END
    if current != expected and os.environ.get("SELFHOST_UPDATE_READMES") == "1":
        readme.write_text(head + expected + tail)
        current = expected
    assert current == expected, (
        f"roles/{role}/README.md's variable section differs from meta/argument_specs.yml; regenerate it with "
        "SELFHOST_UPDATE_READMES=1 pytest -p no:cacheprovider tests/unit/roles/test_role_readmes.py"
    )


def test_every_default_mirrors_the_argument_specs():
    # defaults/main.yml mirrors the spec: same names, same values (the README shows the spec's).
    for spec_file in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        role = spec_file.parent.parent
        defaults_file = role / "defaults" / "main.yml"
        defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
        options = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"].get("options") or {}
        for name, value in (defaults or {}).items():
            assert name in options, f"{role.name}: {name} is in defaults/main.yml but not in argument_specs.yml"
            # Templated defaults ("{{ ... }}") are described in words in the spec instead.
            if "{{" not in str(value):
                assert options[name].get("default") == value, f"{role.name}: default of {name} differs from the spec"
