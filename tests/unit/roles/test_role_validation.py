"""The immich, restic and traefik roles refuse bad input before they touch a host, with the message a user reads.

One ansible-playbook run per role checks all its cases (tests/unit/utils/role_checks.py): the real role in check
mode, limited to the argument-spec validation and the role's own checks (tag <role>_validate). Each bad case must
fail before any change, with a message containing the expected text; each valid case must pass; no sentinel secret
may appear in the output. The host-side refusals of immich (thumbs on the box mount, a downgrade) need a host:
molecule/immich proves them. The docker, sshfs_storagebox, traefik and runpod_endpoint corpora of the hardening
work are in test_role_bad_input.py.
"""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.tests.unit.utils.role_checks import CheckRun, assert_refused, check_role

# --- immich
IMMICH_SENTINEL = "SentinelDbPassword0123456789"
IMMICH_ADMIN_SENTINEL = "SentinelAdminPass-77e1"
IMMICH_VALID = {"immich_domain": "photos.example.org", "immich_admin_email": "admin@example.org",
                "immich_admin_password": IMMICH_ADMIN_SENTINEL}
IMMICH_VALID_CASES = {
    "valid": {
        **IMMICH_VALID,
        "immich_db_password": IMMICH_SENTINEL,
        "immich_config_overrides": {"machineLearning": {"clip": {"modelName": "ViT-B-16__openai"}},
                                    "oauth": {"enabled": False}, "ffmpeg": {"acceptedVideoCodecs": ["h264"]}},
    },
    # The explicit opt-out: no admin created by the role (the sign-up stays refused at Traefik).
    "admin-opt-out": {"immich_domain": "photos.example.org", "immich_admin_create": False},
}  # fmt: skip
IMMICH_SECRETS = [IMMICH_SENTINEL, IMMICH_ADMIN_SENTINEL]
# case -> (overrides of IMMICH_VALID, text the failure must contain); None leaves the variable unset.
IMMICH_BAD = {
    "no-domain": (
        {"immich_domain": None},
        "missing required arguments: immich_domain",
    ),
    "url-domain": (
        {"immich_domain": "https://photos.example.org/"},
        "is not a fully qualified",
    ),
    "v2": (
        {"immich_version": "v2.7.5"},
        "is not supported: give an Immich v3 release tag",
    ),
    "floating-tag": (
        {"immich_version": "release"},
        "is not supported",
    ),
    "no-leading-v": (
        {"immich_version": "3.3.1"},
        "is not supported",
    ),
    "db-password-chars": (
        {"immich_db_password": "Pass-word$1"},
        "may only contain A-Z, a-z and 0-9",
    ),
    "thumbs-on-box": (
        {"immich_thumbs_location": "/mnt/storagebox/immich/thumbs"},
        "immich_thumbs_location '/mnt/storagebox/immich/thumbs' is inside immich_upload_location",
    ),
    "db-on-box": (
        {"immich_db_data_location": "/mnt/storagebox/immich/postgres"},
        "immich_db_data_location '/mnt/storagebox/immich/postgres' is inside",
    ),
    "misspelt-config-key": (
        {"immich_config_overrides": {"machineLearning": {"clip": {"modelname": "ViT-B-16__openai"}}}},
        "Immich does not know: machineLearning.clip.modelname"),
    "misspelt-section": (
        {"immich_config_overrides": {"machinelearning": {"enabled": False}}},
        "Immich does not know: machinelearning.enabled",
    ),
    "published-on-all": (
        {"immich_server_bind_address": "0.0.0.0"},
        "is not a loopback address",
    ),
    "pull": (
        {"immich_pull_policy": "sometimes"},
        "value of immich_pull_policy must be one of",
    ),
    "admin-half": (
        {"immich_admin_password": None},
        "immich_admin_email and immich_admin_password (vault) are required",
    ),
    # The security issue: no admin means a fresh instance anyone can claim.
    "admin-missing": (
        {"immich_admin_email": None, "immich_admin_password": None},
        "immich_admin_email and immich_admin_password (vault) are required",
    ),
    "admin-password-newline": (
        {"immich_admin_password": IMMICH_ADMIN_SENTINEL + "\n"},
        "without surrounding whitespace",
    ),
    "admin-email-not-an-address": ({"immich_admin_email": "admin"}, "immich_admin_email and immich_admin_password"),
    "admin-name-newline": ({"immich_admin_name": "Admin\nx"}, "one-line immich_admin_name"),
    "version-newline": ({"immich_version": "v3.3.1\n"}, "is not supported"),
    "domain-newline": ({"immich_domain": "photos.example.org\n"}, "is not a fully qualified"),
    "db-password-newline": ({"immich_db_password": IMMICH_SENTINEL + "\n"}, "may only contain A-Z, a-z and 0-9"),
    "project-dir-root": ({"immich_project_dir": "/"}, "immich_project_dir '/' is not a usable path"),
    "local-dir-etc": ({"immich_local_dir": "/etc"}, "immich_local_dir '/etc' is not a usable path"),
    "project-dir-up": ({"immich_project_dir": "/opt/../etc"}, "immich_project_dir '/opt/../etc' is not a usable path"),
    "local-dir-newline": ({"immich_local_dir": "/var/lib/immich\nX=1"}, "immich_local_dir"),
    "upload-relative": ({"immich_upload_location": "mnt/box"}, "immich_upload_location 'mnt/box' is not a usable"),
    "timezone-newline": ({"immich_timezone": "Etc/UTC\nDB_PASSWORD=x"}, "immich_timezone"),
    "db-user-newline": ({"immich_db_username": "postgres\nX=1"}, "immich_db_username"),
    "db-name-space": ({"immich_db_database_name": "im mich"}, "immich_db_database_name 'im mich' is malformed"),
    "shm-size": ({"immich_db_shm_size": "lots"}, "immich_db_shm_size 'lots' is malformed"),
    "status-unit-option": ({"immich_status_backup_unit": "--now x.service"}, "immich_status_backup_unit must be"),
    "smtp": (
        {"immich_smtp_enabled": True},
        "needs immich_smtp_host and immich_smtp_from",
    ),
}

# --- restic
RESTIC_SENTINEL_PASSWORD = "sentinel-restic-pass-4b1d"
RESTIC_SENTINEL_TOKEN = "sentinel-hetzner-token-5c2e"
RESTIC_VALID = {"restic_password": RESTIC_SENTINEL_PASSWORD}
RESTIC_VALID_CASES = {
    "valid": RESTIC_VALID,
    # A lab's plain-HTTP API stand-in, allowed by the switch.
    "lab-http-api": {**RESTIC_VALID, "restic_storagebox_api_token": RESTIC_SENTINEL_TOKEN, "restic_storagebox_id": 1,
                     "restic_storagebox_api_url": "http://hetzner-fake:8080/v1",
                     "restic_storagebox_api_allow_http": True},
    "loopback-http-api": {**RESTIC_VALID, "restic_storagebox_api_token": RESTIC_SENTINEL_TOKEN,
                          "restic_storagebox_id": 1, "restic_storagebox_api_url": "http://127.0.0.1:8080/v1"},
}
RESTIC_SECRETS = [RESTIC_SENTINEL_PASSWORD, RESTIC_SENTINEL_TOKEN]
# case -> (overrides of RESTIC_VALID, text the failure must contain); None leaves the variable unset.
RESTIC_BAD = {
    "no-password": (
        {"restic_password": None},
        "missing required arguments: restic_password",
    ),
    "short-password": (
        {"restic_password": "short"},
        "at least 12 characters",
    ),
    "too-old": (
        {"restic_version": "0.16.4"},
        "0.17.0 or newer",
    ),
    "leading-v": (
        {"restic_version": "v0.19.1"},
        "without a leading v",
    ),
    "short-key-id": (
        {"restic_gpg_fingerprint": "91A6868BD3F7A907"},
        "40-hex-digit",
    ),
    "bad-digest": (
        {"restic_release_sha256": {"arm64": "abc"}},
        "64-hex-digit",
    ),
    "unknown-arch-digest": (
        {"restic_release_sha256": {"riscv64": "a" * 64}},
        "arm64/amd64",
    ),
    "user-at-host": (
        {"restic_ssh_alias": "u123456@u123456.your-storagebox.de"},
        "no user@",
    ),
    "port-in-path": (
        {"restic_repository_path": "23/restic"},
        "'23/restic' means a folder",
    ),
    "colon-in-path": (
        {"restic_repository_path": "host:restic"},
        "without ':' or '@'",
    ),
    "relative-path": (
        {"restic_backup_paths": ["opt/immich/.env"]},
        "take absolute paths",
    ),
    "root-path": (
        {"restic_backup_paths": ["/"]},
        "take absolute paths",
    ),
    "empty-dump": (
        {"restic_dump_command": []},
        "restic_dump_command is an argv list",
    ),
    "no-retention": (
        {"restic_keep_daily": 0, "restic_keep_weekly": 0, "restic_keep_monthly": 0, "restic_keep_yearly": 0},
        "at least one above 0"),
    "keep-not-int": (
        {"restic_keep_daily": "seven"},
        "restic_keep_daily",
    ),
    "bad-subset": (
        {"restic_check_read_data_subset": "all"},
        "is not n/t, x% or a size",
    ),
    "ping-no-scheme": (
        {"restic_ping_url": "hc-ping.com/uuid"},
        "empty or http(s) URLs",
    ),
    "bad-delay": (
        {"restic_backup_randomized_delay": "soon"},
        "a time span",
    ),
    "token-without-id": (
        {"restic_storagebox_api_token": "sentinel-token"},
        "restic_storagebox_id must be the box's ID",
    ),
    # Anchored checks: a trailing newline passes `$`, never `\Z`.
    "version-newline": ({"restic_version": "0.17.3\n"}, "is not supported: give a release as X.Y.Z"),
    "fingerprint-newline": ({"restic_gpg_fingerprint": "CF8F18F2844575973F79D4E191A6868BD3F7A907\n"}, "40-hex-digit"),
    "alias-newline": ({"restic_ssh_alias": "selfhost-storagebox\n"}, "restic_ssh_alias is the ssh_config Host alias"),
    "calendar-newline": ({"restic_backup_on_calendar": "*-*-* 03:00:00\n"}, "restic_backup_on_calendar and"),
    # The repository path lands in restic.env (systemd and the selfhost-restic wrapper read it).
    "path-command-substitution": ({"restic_repository_path": "restic$(touch /tmp/pwned)"},
                                  "restic_repository_path must be a path on the box"),
    "path-newline": ({"restic_repository_path": "restic\nRESTIC_PASSWORD_COMMAND=sh"},
                     "restic_repository_path must be a path on the box"),
    "path-dot-dot": ({"restic_repository_path": "restic/../../etc"}, "no '..' segment"),
    "path-leading-dash": ({"restic_repository_path": "--password-command=x"}, "no leading '-'"),
    "dumps-dir-unit-injection": ({"restic_immich_dumps_dir": "/srv/backups\nExecStartPre=/bin/sh"},
                                 "restic_immich_dumps_dir only letters"),
    "db-name-injection": ({"restic_db_name": "immich --file=/etc/shadow"}, "restic_db_name and restic_db_user"),
    "api-url-plain-http": ({"restic_storagebox_api_token": "sentinel-token", "restic_storagebox_id": 1,
                            "restic_storagebox_api_url": "http://api.hetzner.example/v1"},
                           "unless restic_storagebox_api_allow_http is true"),
    "api-url-newline": ({"restic_storagebox_api_token": "sentinel-token", "restic_storagebox_id": 1,
                         "restic_storagebox_api_url": "https://api.hetzner.com/v1\n"},
                        "restic_storagebox_api_url must be empty or https://"),
}

# --- traefik
TRAEFIK_SENTINEL_TOKEN = "sentinel-cf-token-7f3a9c"
TRAEFIK_VALID = {
    "traefik_acme_email": "admin@example.org",
    "traefik_acme_challenge": "http",
    "traefik_acme_domains": ["photos.example.org"],
}
TRAEFIK_VALID_CASES = {
    "valid": TRAEFIK_VALID,
    "wildcard-with-dns": {
        **TRAEFIK_VALID,
        "traefik_acme_challenge": "dns-cloudflare",
        "traefik_cloudflare_dns_api_token": TRAEFIK_SENTINEL_TOKEN,
        "traefik_acme_domains": ["example.org", "*.example.org"],
    },
    # The secrets guard fires only while a served file holds a secret (traefik_dynamic_secrets) ...
    "debug-without-dynamic-secrets": {**TRAEFIK_VALID, "traefik_log_level": "DEBUG"},
    # ... and then allows INFO, and an access log that keeps other headers but redacts Authorization.
    "dynamic-secrets-at-info": {
        **TRAEFIK_VALID,
        "traefik_dynamic_secrets": True,
        "traefik_access_log_enabled": True,
        "traefik_access_log_headers": {"User-Agent": "keep", "Authorization": "redact"},
        "traefik_request_accept_grace_timeout": "0s",
        "traefik_grace_timeout": "2m",
        "traefik_cert_resolver": "le_prod-1",
        "traefik_acme_ca_server": "https://acme-staging-v02.api.letsencrypt.org/directory",
    },
}
TRAEFIK_SECRETS = [TRAEFIK_SENTINEL_TOKEN]
# case -> (overrides of TRAEFIK_VALID, text the failure must contain); None leaves the variable unset.
TRAEFIK_BAD = {
    "no-email": (
        {"traefik_acme_email": None},
        "missing required arguments: traefik_acme_email",
    ),
    "bad-email": (
        {"traefik_acme_email": "admin"},
        "is not an e-mail address",
    ),
    "unknown-challenge": (
        {"traefik_acme_challenge": "tls-alpn"},
        "value of traefik_acme_challenge must be one of: dns-cloudflare, http, got: tls-alpn",
    ),
    "no-dot": (
        {"traefik_acme_domains": ["photos"]},
        "'photos' is not a fully qualified domain",
    ),
    "url-not-name": (
        {"traefik_acme_domains": ["https://photos.example.org/"]},
        "is not a fully qualified domain name",
    ),
    "trailing-dot": (
        {"traefik_acme_domains": ["photos.example.org."]},
        "is not a fully qualified",
    ),
    "wildcard-http": (
        {"traefik_acme_domains": ["*.example.org"]},
        "only the DNS-01 challenge",
    ),
    "too-old": (
        {"traefik_version": "3.5.3"},
        "3.6.1 or newer",
    ),
    "leading-v": (
        {"traefik_version": "v3.7.15"},
        "without a\nleading v",
    ),
    "dns-without-token": (
        {"traefik_acme_challenge": "dns-cloudflare"},
        "traefik_cloudflare_dns_api_token must hold a Cloudflare API",
    ),
    "reserved-entrypoint": (
        {"traefik_extra_entrypoints": {"websecure": {"address": ":8443"}}},
        "web, websecure and traefik are reserved",
    ),
    "dashboard-without-auth": (
        {"traefik_dashboard_enabled": True, "traefik_dashboard_host": "traefik.example.org"},
        "never served without authentication",
    ),
    "cert-resolver-injection": (
        {"traefik_cert_resolver": "acme\napi: {insecure: true}"},
        "traefik_cert_resolver must be a name of letters, digits, '-' and '_'",
    ),
    "grace-malformed": (
        {"traefik_grace_timeout": "30 s"},
        "traefik_grace_timeout: must be whole seconds or minutes of at least 1s",
    ),
    "debug-with-dynamic-secrets": (
        {"traefik_dynamic_secrets": True, "traefik_log_level": "DEBUG"},
        "traefik_dynamic_secrets is true (a file Traefik serves holds a secret",
    ),
}

# role -> (valid cases, bad cases: case -> (overrides of the valid base, expected text; None unsets), secrets)
ROLES = {
    "immich": (IMMICH_VALID_CASES, IMMICH_VALID, IMMICH_BAD, IMMICH_SECRETS),
    "restic": (RESTIC_VALID_CASES, RESTIC_VALID, RESTIC_BAD, RESTIC_SECRETS),
    "traefik": (TRAEFIK_VALID_CASES, TRAEFIK_VALID, TRAEFIK_BAD, TRAEFIK_SECRETS),
}


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """role -> its one CheckRun, made on first use."""
    runs: dict[str, CheckRun] = {}

    def run(role: str) -> CheckRun:
        if role not in runs:
            valid_cases, base, bad, _ = ROLES[role]
            cases = {**valid_cases, **{case: {k: v for k, v in {**base, **override}.items() if v is not None}
                                       for case, (override, _) in bad.items()}}  # fmt: skip
            runs[role] = check_role(role, cases, tmp_path_factory.mktemp(role))
        return runs[role]

    return run


@pytest.mark.parametrize(("role", "case"), [(r, c) for r, (valid, *_) in ROLES.items() for c in valid])
def test_valid_input_passes(checks, role, case):
    assert checks(role).hosts[case].passed, checks(role).output[-3000:]


@pytest.mark.parametrize(("role", "case"), [(r, c) for r, (_, _, bad, _) in ROLES.items() for c in bad])
def test_bad_input_fails_with_a_clear_message(checks, role, case):
    assert_refused(checks(role), case, ROLES[role][2][case][1])


@pytest.mark.parametrize("role", list(ROLES))
def test_no_secret_reaches_the_output(checks, role):
    run = checks(role)
    assert run.hosts["valid"].passed
    for secret in ROLES[role][3]:
        assert secret not in run.output
