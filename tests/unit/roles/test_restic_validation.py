"""The restic role refuses bad input before it touches a host.

One ansible-playbook run checks every case (tests/unit/utils/role_checks.py): the real role in check mode, limited
to the argument-spec validation and the role's own checks (tag restic_validate); each case must fail on the
message a user would read, before any change.
"""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.tests.unit.utils.role_checks import CheckRun, assert_refused, check_role

ROLE = "restic"
SENTINEL_PASSWORD = "sentinel-restic-pass-4b1d"
VALID = {"restic_password": SENTINEL_PASSWORD}
VALID_CASES = {"valid": VALID}
SECRETS = [SENTINEL_PASSWORD]
# case -> (overrides of VALID, text the failure must contain); None leaves the variable unset.
BAD = {
    "no-password": ({"restic_password": None},
        "missing required arguments: restic_password"),
    "short-password": ({"restic_password": "short"},
        "at least 12 characters"),
    "too-old": ({"restic_version": "0.16.4"},
        "0.17.0 or newer"),
    "leading-v": ({"restic_version": "v0.19.1"},
        "without a leading v"),
    "short-key-id": ({"restic_gpg_fingerprint": "91A6868BD3F7A907"},
        "40-hex-digit"),
    "bad-digest": ({"restic_release_sha256": {"arm64": "abc"}},
        "64-hex-digit"),
    "unknown-arch-digest": ({"restic_release_sha256": {"riscv64": "a" * 64}},
        "arm64/amd64"),
    "user-at-host": ({"restic_ssh_alias": "u123456@u123456.your-storagebox.de"},
        "no user@"),
    "port-in-path": ({"restic_repository_path": "23/restic"},
        "'23/restic' means a folder"),
    "colon-in-path": ({"restic_repository_path": "host:restic"},
        "without ':' or '@'"),
    "relative-path": ({"restic_backup_paths": ["opt/immich/.env"]},
        "take absolute paths"),
    "root-path": ({"restic_backup_paths": ["/"]},
        "take absolute paths"),
    "empty-dump": ({"restic_dump_command": []},
        "restic_dump_command is an argv list"),
    "no-retention": (
        {"restic_keep_daily": 0, "restic_keep_weekly": 0, "restic_keep_monthly": 0, "restic_keep_yearly": 0},
        "at least one above 0"),
    "keep-not-int": ({"restic_keep_daily": "seven"},
        "restic_keep_daily"),
    "bad-subset": ({"restic_check_read_data_subset": "all"},
        "is not n/t, x% or a size"),
    "ping-no-scheme": ({"restic_ping_url": "hc-ping.com/uuid"},
        "empty or http(s) URLs"),
    "bad-delay": ({"restic_backup_randomized_delay": "soon"},
        "a time span"),
    "token-without-id": ({"restic_storagebox_api_token": "sentinel-token"},
        "restic_storagebox_id must be the box's ID"),
}


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> CheckRun:
    bad = {case: {k: v for k, v in {**VALID, **override}.items() if v is not None}
           for case, (override, _) in BAD.items()}
    return check_role(ROLE, {**VALID_CASES, **bad}, tmp_path_factory.mktemp(ROLE))


@pytest.mark.parametrize("case", list(VALID_CASES))
def test_valid_input_passes(checks, case):
    assert checks.hosts[case].passed, checks.output[-3000:]


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_with_a_clear_message(checks, case):
    assert_refused(checks, case, BAD[case][1])


def test_no_secret_reaches_the_output(checks):
    assert checks.hosts["valid"].passed
    for secret in SECRETS:
        assert secret not in checks.output
