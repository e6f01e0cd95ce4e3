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


IMMICH_ROLE = Path(__file__).resolve().parents[3] / "roles" / "immich"


def render_immich(template: str, **overrides) -> str:
    """One of the immich role's templates, rendered with its defaults and vars (and a domain, no ML, a DB password)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    role_vars = {**load_trusted(IMMICH_ROLE / "defaults" / "main.yml"),
                 **load_trusted(IMMICH_ROLE / "vars" / "main.yml")}
    variables = {**role_vars, "immich_domain": "photos.example.org", "immich_ml_urls": [],
                 "immich_db_password_effective": "x", **overrides}
    return Templar(loader=DataLoader(), variables=variables).template(
        trust_as_template((IMMICH_ROLE / "templates" / template).read_text()))
