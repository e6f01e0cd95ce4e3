"""The collection builds into a tarball that ansible-galaxy installs and ansible-doc lists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*args: str, env: dict | None = None, cwd: Path = REPO) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_build_install_and_list(tmp_path):
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    _run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), "--force")
    tarball = tmp_path / f"selfhost-immich-{galaxy['version']}.tar.gz"
    assert tarball.is_file()

    # --no-deps: Ansible Galaxy is unreachable here; the dependencies come from the `ansible` package.
    # Outside the checkout (its ansible.cfg points at the working tree) and with only the install dir
    # configured, so the freshly installed copy is what gets listed.
    install_dir = tmp_path / "installed"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(install_dir))
    _run(str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(install_dir), str(tarball),
         env=env, cwd=tmp_path)
    installed = install_dir / "ansible_collections" / "selfhost" / "immich"
    for part in ("roles/docker/meta/argument_specs.yml", "meta/runtime.yml", "plugins/module_utils/_api.py"):
        assert (installed / part).is_file(), part
    # Nothing of the test lab or the repo's machinery is shipped.
    for part in (".ci", ".collections", ".venv", ".git"):
        assert not (installed / part).exists(), part

    listing = _run(str(BIN / "ansible-doc"), "-t", "module", "-l", "selfhost.immich", env=env, cwd=tmp_path)
    modules = sorted(Path(p).stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    for module in modules:
        assert f"selfhost.immich.{module}" in listing
    assert modules, "the collection ships no modules"
    roles = _run(str(BIN / "ansible-doc"), "-t", "role", "-l", "selfhost.immich", env=env, cwd=tmp_path)
    assert "selfhost.immich.docker" in roles
    shutil.rmtree(install_dir)
