# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one architecture map (documented in release_arch.yml)."""

from __future__ import annotations

# Ansible's ansible_facts.architecture -> the name in Debian, Docker and Go release assets.
ARCHITECTURES = {"aarch64": "arm64", "arm64": "arm64", "x86_64": "amd64", "amd64": "amd64"}


def release_arch(architecture):
    """``arm64`` or ``amd64`` for a supported architecture, else an empty string."""
    return ARCHITECTURES.get(architecture, "") if isinstance(architecture, str) else ""


class FilterModule:
    def filters(self):
        return {"release_arch": release_arch}
