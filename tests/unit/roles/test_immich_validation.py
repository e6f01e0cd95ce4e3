"""The immich role refuses bad input before it touches a host.

One ansible-playbook run checks every case (tests/unit/utils/role_checks.py): the real role in check mode, limited
to the argument-spec validation and the role's own input checks (tag immich_validate); each case must fail on the
message a user would read, before any change. The host-side refusals (thumbs on the box mount, a downgrade) need
a host: molecule/immich proves them.
"""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.tests.unit.utils.role_checks import CheckRun, assert_refused, check_role

ROLE = "immich"
SENTINEL = "SentinelDbPassword0123456789"
VALID = {"immich_domain": "photos.example.org"}
VALID_CASES = {
    "valid": {
        **VALID,
        "immich_db_password": SENTINEL,
        "immich_config_overrides": {"machineLearning": {"clip": {"modelName": "ViT-B-16__openai"}},
                                    "oauth": {"enabled": False}, "ffmpeg": {"acceptedVideoCodecs": ["h264"]}},
    },
}  # fmt: skip
SECRETS = [SENTINEL]
# case -> (overrides of VALID, text the failure must contain); None leaves the variable unset.
BAD = {
    "no-domain": ({"immich_domain": None},
        "missing required arguments: immich_domain"),
    "url-domain": ({"immich_domain": "https://photos.example.org/"},
        "is not a fully qualified"),
    "v2": ({"immich_version": "v2.7.5"},
        "is not supported: give an Immich v3 release tag"),
    "floating-tag": ({"immich_version": "release"},
        "is not supported"),
    "no-leading-v": ({"immich_version": "3.3.1"},
        "is not supported"),
    "db-password-chars": ({"immich_db_password": "Pass-word$1"},
        "may only contain A-Z, a-z and 0-9"),
    "thumbs-on-box": ({"immich_thumbs_location": "/mnt/storagebox/immich/thumbs"},
        "immich_thumbs_location '/mnt/storagebox/immich/thumbs' is inside immich_upload_location"),
    "db-on-box": ({"immich_db_data_location": "/mnt/storagebox/immich/postgres"},
        "immich_db_data_location '/mnt/storagebox/immich/postgres' is inside"),
    "misspelt-config-key": (
        {"immich_config_overrides": {"machineLearning": {"clip": {"modelname": "ViT-B-16__openai"}}}},
        "Immich does not know: machineLearning.clip.modelname"),
    "misspelt-section": ({"immich_config_overrides": {"machinelearning": {"enabled": False}}},
        "Immich does not know: machinelearning.enabled"),
    "published-on-all": ({"immich_server_bind_address": "0.0.0.0"},
        "is not a loopback address"),
    "pull": ({"immich_pull_policy": "sometimes"},
        "value of immich_pull_policy must be one of"),
    "admin-half": ({"immich_admin_email": "admin@example.org"},
        "Set both immich_admin_email"),
    "smtp": ({"immich_smtp_enabled": True},
        "needs immich_smtp_host and immich_smtp_from"),
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
