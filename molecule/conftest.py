"""Shared testinfra fixtures for every Molecule scenario (pyproject.toml makes the repo the rootdir)."""

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
