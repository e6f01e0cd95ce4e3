"""Read a role's own YAML/Jinja files the way Ansible would template them, for template unit tests."""

from __future__ import annotations

from pathlib import Path

import yaml

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19 templates every string: nothing to mark

    def trust_as_template(value):
        return value


def trust(value):
    """ansible-core 2.19 templates only trusted strings: mark the role's own file contents as such (a no-op before)."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trust(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trust(v) for v in value]
    return value


def load_trusted(path: Path):
    """A role YAML file (defaults, vars, tasks), its strings trusted as templates."""
    return trust(yaml.safe_load(path.read_text()))
