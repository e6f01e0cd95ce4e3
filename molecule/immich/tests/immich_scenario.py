"""Constants and helpers shared by the immich scenario's tests (a unique name: conftest.py is not importable)."""

from __future__ import annotations

import subprocess

BOX = "immich-box"
BOX_IMMICH = "/srv/storagebox/u100001/home/immich"
API = "http://127.0.0.1:2283/api"
ADMIN = {"email": "admin@photos.immich.test", "password": "Lab-Admin-Pass-2026"}


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def on_box(script: str) -> str:
    """Run a shell script on the Storage Box stand-in (from the controller); its stdout."""
    return docker("exec", BOX, "sh", "-c", script).stdout
