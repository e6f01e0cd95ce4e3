"""The immich role's IMMICH_CONFIG_FILE, rendered with the role's own defaults and vars, type-checked against
the official @immich/sdk config DTO with TypeScript (tests/lab/immich_cli/check_config.py).

Immich crash-loops on an unknown key, so a misspelt key must fail here, not on a user's server. The SDK and
typescript come from npm (tests/lab/immich_cli/package.json), installed once into the shared lab directory.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "immich"
CLI_SOURCE = REPO / "tests" / "lab" / "immich_cli"
CLI_DIR = Path("/var/tmp/selfhost-immich/immich-cli")
BASE = {"immich_domain": "photos.example.org", "immich_ml_urls": ["http://172.30.0.1:3003/"]}

_spec = importlib.util.spec_from_file_location("check_config", CLI_SOURCE / "check_config.py")
check_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_config)


@pytest.fixture(scope="module")
def cli_dir() -> Path:
    """node_modules with @immich/sdk and typescript (npm install on first use, as molecule/immich does)."""
    CLI_DIR.mkdir(parents=True, exist_ok=True)
    # The lock tests/lab/up.sh takes too: one installer at a time in the shared directory.
    with open(f"{CLI_DIR}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (CLI_DIR / "node_modules" / "typescript").is_dir():
            if shutil.which("npm") is None:
                pytest.fail("npm is needed to install @immich/sdk and typescript (tests/lab/immich_cli/package.json)")
            shutil.copy(CLI_SOURCE / "package.json", CLI_DIR / "package.json")
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=CLI_DIR, check=True)
    return CLI_DIR


def rendered(**overrides) -> dict:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    variables = {**trust(defaults), **trust(role_vars), **BASE, **overrides}
    templar = Templar(loader=DataLoader(), variables=variables)
    text = templar.template(trust_as_template((ROLE / "templates" / "immich-config.yaml.j2").read_text()))
    assert text.startswith("# Managed by selfhost.immich")
    return yaml.safe_load(text)


def sdk_leaf_paths(cli_dir: Path) -> set[str]:
    """Every leaf key path of AdminConfigDto, read from the SDK's generated declarations."""
    source = (cli_dir / "node_modules" / "@immich" / "sdk" / "build" / "fetch-client.d.ts").read_text()
    types = {}
    for match in re.finditer(r"^export type (\w+) = \{\n(.*?)^\};", source, re.S | re.M):
        fields = re.findall(r'^\s+"?(\w+)"?\??: (.+);$', match.group(2), re.M)
        types[match.group(1)] = dict(fields)

    def walk(name: str, prefix: str) -> set[str]:
        paths = set()
        for key, kind in types[name].items():
            is_section = kind in types and kind.startswith("AdminConfig")
            paths |= walk(kind, f"{prefix}{key}.") if is_section else {prefix + key}
        return paths

    return walk("AdminConfigDto", "")


def leaf_paths(tree: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in tree.items():
        paths |= leaf_paths(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return paths


def test_default_config_type_checks_against_the_sdk(cli_dir):
    config = rendered()
    result = check_config.check(config, cli_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert config["machineLearning"]["urls"] == ["http://172.30.0.1:3003/"]
    assert config["machineLearning"]["enabled"] is True
    assert config["server"]["externalDomain"] == "https://photos.example.org"
    assert config["storageTemplate"]["template"] == "{{y}}/{{y}}-{{MM}}-{{dd}}/{{filename}}"
    assert config["backup"]["database"] == {"enabled": True, "cronExpression": "0 02 * * *", "keepLastAmount": 14}


def test_local_ml_is_the_fallback_after_the_gateway(cli_dir):
    config = rendered(immich_local_ml_enabled=True)
    assert config["machineLearning"]["urls"] == ["http://172.30.0.1:3003/", "http://immich-machine-learning:3003"]
    assert check_config.check(config, cli_dir).returncode == 0


def test_no_ml_url_disables_machine_learning():
    assert rendered(immich_ml_urls=[])["machineLearning"]["enabled"] is False


def test_smtp_and_overrides_type_check(cli_dir):
    config = rendered(
        immich_smtp_enabled=True,
        immich_smtp_host="smtp.example.org",
        immich_smtp_from="Immich <photos@example.org>",
        immich_config_overrides={"machineLearning": {"clip": {"modelName": "ViT-B-16__openai"}}, "trash": {"days": 60}},
    )
    assert config["machineLearning"]["clip"] == {"enabled": True, "modelName": "ViT-B-16__openai"}
    assert config["notifications"]["smtp"]["transport"]["port"] == 587
    result = check_config.check(config, cli_dir)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "bad_key"),
    [
        pytest.param({"machineLearning": {"url": ["http://x:3003"]}}, "url", id="misspelt-ml-key"),
        pytest.param({"storagetemplate": {"enabled": True}}, "storagetemplate", id="misspelt-section"),
    ],
)
def test_misspelt_key_fails_the_type_check(cli_dir, override, bad_key):
    result = check_config.check(rendered(immich_config_overrides=override), cli_dir)
    assert result.returncode != 0
    assert f"'\"{bad_key}\"' does not exist in type" in result.stdout + result.stderr


def test_wrong_value_type_fails_the_type_check(cli_dir):
    result = check_config.check(rendered(immich_config_overrides={"trash": {"days": "sixty"}}), cli_dir)
    assert result.returncode != 0
    assert "not assignable to type 'number" in result.stdout + result.stderr


def test_role_and_double_know_exactly_the_sdk_keys(cli_dir):
    sdk = sdk_leaf_paths(cli_dir)
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert set(role_vars["immich_config_known_paths"]) == sdk
    double = json.loads((REPO / "tests" / "lab" / "immich_double" / "admin_config_keys.json").read_text())
    assert leaf_paths(double) == sdk
