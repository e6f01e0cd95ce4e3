"""Kept for tests/unit/roles, which import ``role_files``; the helpers live in tests/unit/utils/role_files.py."""

from __future__ import annotations

from ansible_collections.selfhost.immich.tests.unit.utils.role_files import load_trusted, trust

__all__ = ["load_trusted", "trust"]
