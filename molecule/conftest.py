"""Shared testinfra fixtures for every Molecule scenario (pyproject.toml makes the repo the rootdir), and the order
of a scenario's tests (conftest.py is not importable: what tests share is a fixture here)."""

import time
from collections.abc import Callable

import pytest

ARCH_BY_GROUP = {"arm64": "aarch64", "amd64": "x86_64"}


@pytest.fixture
def platform_group(host):
    """The platform group (arm64 / amd64) Molecule put this host in."""
    groups = set(host.ansible.get_variables().get("group_names", []))
    found = groups & ARCH_BY_GROUP.keys()
    assert len(found) == 1, f"host is in none or several platform groups: {groups}"
    return found.pop()


@pytest.fixture
def expected_arch(platform_group):
    return ARCH_BY_GROUP[platform_group]


@pytest.fixture
def native_only(platform_group):
    """For checks that must start containers inside the host: only on the native amd64 platform,
    because runc cannot start nested containers under qemu-user emulation."""
    if platform_group != "amd64":
        pytest.skip("nested containers cannot start under qemu-user; checked on the amd64 platform")


# --- The order of a scenario's tests: explicit, never by file name.


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "disruptive: stops or restarts the host, its mount or the box: runs after every other test"
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Tests marked disruptive run last (in their own order), whatever their file is called: every other test sees
    the undisturbed host. A stable sort: the rest keep pytest's order."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


# --- Helpers of the scenarios whose host mounts a Storage Box stand-in (sshfs_storagebox, immich).

STORAGEBOX_MOUNT = "/mnt/storagebox"  # the sshfs_storagebox role's default mount path, which those scenarios keep


def _wait_for(what: str, predicate: Callable[[], bool], timeout: float, interval: float = 2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def wait_for():
    """wait_for(what, predicate, timeout, interval=2): poll until the predicate holds, or fail naming `what`."""
    return _wait_for


@pytest.fixture
def mounted(host) -> Callable[[], bool]:
    """mounted(): the Storage Box is mounted over SSHFS on the host now."""
    return lambda: host.run(f"findmnt -n -o FSTYPE --mountpoint {STORAGEBOX_MOUNT}").stdout.strip() == "fuse.sshfs"
