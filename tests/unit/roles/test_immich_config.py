"""The immich role's IMMICH_CONFIG_FILE, rendered with the role's own defaults and vars, type-checked against
the official @immich/sdk config DTO with TypeScript (tests/lab/immich_cli/check_config.py), and the role's key
list (roles/immich/files/config_keys.json, which the server double reads too) equal to the SDK's.

Immich crash-loops on an unknown key, so a misspelt key must fail here, not on a user's server. The SDK and
typescript come from npm (tests/lab/immich_cli/package.json), installed into the shared lab directory by
tests/lab/immich_cli/install.sh: this runs in tests/run.sh's pytest step, which fails without npm.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.selfhost.immich.tests.unit.utils.role_files import trust, trust_as_template

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "immich"
CLI_SOURCE = REPO / "tests" / "lab" / "immich_cli"
BASE = {"immich_domain": "photos.example.org", "immich_ml_urls": ["http://172.30.0.1:3003/"]}

_spec = importlib.util.spec_from_file_location("check_config", CLI_SOURCE / "check_config.py")
check_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_config)


@pytest.fixture(scope="module")
def cli_dir() -> Path:
    """node_modules with @immich/sdk and typescript (the one installer; a no-op when they are in place)."""
    subprocess.run(["bash", str(CLI_SOURCE / "install.sh")], check=True)
    return check_config.DEFAULT_CLI_DIR


def rendered(**overrides) -> dict:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    variables = {**trust(defaults), **trust(role_vars), **BASE, **overrides}
    templar = Templar(loader=DataLoader(), variables=variables)
    text = templar.template(trust_as_template((ROLE / "templates" / "immich-config.yaml.j2").read_text()))
    assert text.startswith("# Managed by selfhost.immich")
    return yaml.safe_load(text)


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


def test_typed_settings_reach_the_config_and_type_check(cli_dir):
    config = rendered(
        immich_external_domain="https://share.example.org", immich_trash_enabled=False, immich_trash_days=7,
        immich_password_login_enabled=False, immich_oauth_enabled=True,
        immich_oauth_issuer_url="https://auth.example.org/application/o/immich/", immich_oauth_client_id="immich",
        immich_oauth_client_secret="oauth-client-secret", immich_oauth_token_endpoint_auth_method="client_secret_basic",
        immich_oauth_auto_register=False, immich_oauth_auto_launch=True, immich_oauth_button_text="Sign in",
        immich_new_version_check=True, immich_storage_template_enabled=True,
        # As a user writes it in the inventory (Ansible would template it otherwise).
        immich_storage_template=trust_as_template("{% raw %}{{y}}/{{MM}}/{{filename}}{% endraw %}"),
    )
    assert config["server"]["externalDomain"] == "https://share.example.org"
    assert config["trash"] == {"enabled": False, "days": 7}
    assert config["passwordLogin"] == {"enabled": False}
    assert config["oauth"] == {
        "enabled": True, "issuerUrl": "https://auth.example.org/application/o/immich/", "clientId": "immich",
        "clientSecret": "oauth-client-secret", "scope": "openid email profile",
        "tokenEndpointAuthMethod": "client_secret_basic", "buttonText": "Sign in", "autoRegister": False,
        "autoLaunch": True,
    }
    assert config["newVersionCheck"] == {"enabled": True}
    assert config["storageTemplate"] == {"enabled": True, "template": "{{y}}/{{MM}}/{{filename}}"}
    result = check_config.check(config, cli_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_typed_settings_default_to_immichs_own_defaults():
    config = rendered()
    assert config["trash"] == {"enabled": True, "days": 30}
    assert config["passwordLogin"] == {"enabled": True}
    assert config["oauth"]["enabled"] is False
    assert config["newVersionCheck"] == {"enabled": False}  # the version is managed here


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


def test_a_value_outside_an_enum_fails_the_type_check(cli_dir):
    result = check_config.check(rendered(immich_oauth_token_endpoint_auth_method="private_key_jwt"), cli_dir)
    assert result.returncode != 0
    assert '"private_key_jwt"' in result.stdout + result.stderr


def test_wrong_value_type_fails_the_type_check(cli_dir):
    result = check_config.check(rendered(immich_config_overrides={"trash": {"days": "sixty"}}), cli_dir)
    assert result.returncode != 0
    assert "not assignable to type 'number" in result.stdout + result.stderr


def test_the_checked_in_key_list_is_the_installed_sdks(cli_dir):
    """Fails after an SDK upgrade in package.json until `check_config.py --keys --write` regenerates the list."""
    sdk = check_config.sdk_keys(cli_dir)
    assert sdk["sdk"] == "@immich/sdk {} AdminConfigDto".format(
        json.loads((CLI_SOURCE / "package.json").read_text())["dependencies"]["@immich/sdk"]
    )
    assert {"machineLearning.urls", "notifications.smtp.transport.port", "trash.days"} <= set(sdk["paths"])
    assert check_config.compare_keys(cli_dir, write=False) == 0  # prints the differences
    assert json.loads(check_config.KEYS_FILE.read_text()) == sdk


def test_role_and_double_read_the_key_list():
    """The role's check reads the list (tests/functional/test_role_bad_input.py runs it); the double's is a link."""
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert "/files/config_keys.json" in role_vars["immich_config_known_paths"]
    double_keys = REPO / "tests" / "lab" / "immich_double" / "config_keys.json"
    assert double_keys.resolve() == check_config.KEYS_FILE
