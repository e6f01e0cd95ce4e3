"""The immich role's public route: the first admin is never claimable from outside (the security issue).

- The Traefik dynamic file refuses POST /api/auth/admin-sign-up to every client, in every spelling Immich's router
  accepts (express matches paths case-insensitively and ignores a trailing slash; Traefik collapses no slashes).
- The role writes that route only after the admin exists: in tasks/main.yml the admin tasks come before the route.
The refusal itself (403 through a real Traefik) is checked end to end in tests/e2e/test_lab.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust, trust_as_template

ROLE = Path(__file__).resolve().parents[3] / "roles" / "immich"
DOMAIN = "photos.example.org"


@pytest.fixture(scope="module")
def route() -> dict:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    templar = Templar(loader=DataLoader(), variables={**trust(defaults), **trust(role_vars), "immich_domain": DOMAIN})
    template = (ROLE / "templates" / "traefik-immich.yml.j2").read_text()
    return yaml.safe_load(templar.template(trust_as_template(template)))


def _sign_up_regex(rule: str) -> re.Pattern:
    """The PathRegexp of a Traefik rule, as Python reads it (Go's RE2 agrees for this syntax)."""
    match = re.fullmatch(r"Host\(`(?P<host>[^`]+)`\) && PathRegexp\(`(?P<regex>[^`]+)`\)", rule)
    assert match, rule
    assert match.group("host") == DOMAIN
    return re.compile(match.group("regex"))


@pytest.mark.parametrize("path", ["/api/auth/admin-sign-up", "/api/auth/admin-sign-up/", "/API/Auth/Admin-Sign-Up",
                                  "//api//auth/admin-sign-up", "/api/auth/admin-sign-up?x=1"])
def test_every_spelling_of_the_sign_up_is_refused(route, path):
    router = route["http"]["routers"]["immich-admin-sign-up"]
    assert _sign_up_regex(router["rule"]).match(path.split("?")[0])
    # It outranks the catch-all router of the domain and ends in a middleware that lets no client through.
    assert router["priority"] > route["http"]["routers"]["immich"].get("priority", 0)
    assert router["entryPoints"] == route["http"]["routers"]["immich"]["entryPoints"]
    (middleware,) = router["middlewares"]
    assert route["http"]["middlewares"][middleware] == {"ipAllowList": {"sourceRange": ["0.0.0.0/32"]}}


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/server/ping", "/api/auth/admin",
                                  "/x/api/auth/admin-sign-up"])
def test_other_paths_are_not_caught(route, path):
    assert not _sign_up_regex(route["http"]["routers"]["immich-admin-sign-up"]["rule"]).match(path)


def test_the_admin_is_made_before_the_route_opens():
    names = [task.get("name", "") for task in yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())]
    stack = names.index("Start or update the stack and wait for it on loopback")
    admin = names.index("Create the first admin, or check that the admin is ours")
    route = names.index("Route the domain through Traefik")
    assert stack < admin < route
