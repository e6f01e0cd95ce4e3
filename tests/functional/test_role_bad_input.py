"""The roles' bad-input corpus: every malformed role variable is refused before anything changes, with the message
a user reads, and no secret is ever echoed.

One ansible-playbook run per role (check_role below): the real role in check mode against local-connection hosts,
limited to its checks (tag <role>_validate; the argument-spec validation and the shared preflight always run).
Every case is its own inventory host carrying its variables as host variables, so one run tries them all: each bad
case must fail on its own message with nothing changed before, each valid case must pass, and none of the role's
secrets may appear in the output. The host-side refusals of immich (thumbs on the box mount, a downgrade) need a
host: molecule/immich proves them. The modules' corpus is test_module_bad_input.py.

A role's section: <ROLE>_BASE (a valid host), <ROLE>_VALID (more valid hosts, as given), <ROLE>_SECRETS and
<ROLE>_BAD: case -> (overrides of the base, the text the failure must contain, or a tuple of texts). UNSET leaves a
variable unset; None is a null value.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
UNSET = object()
SECRET = "marker-secret-9f8e7d"
# The argument-spec validation (meta/argument_specs.yml) is the role's first task: these cases must fail in it.
ARGUMENT_SPEC_TASK = "Validating arguments against arg spec"

# --- docker
DOCKER_BASE: dict = {}
DOCKER_VALID: dict = {}
DOCKER_SECRETS = [SECRET]
DOCKER_BAD = {
    "typo": ({"docker_instal_source": "distro"}, "did you mean docker_install_source?"),
    "unknown-source": ({"docker_install_source": "snap"}, "docker_install_source"),
    "unknown-source-foo": ({"docker_install_source": "foo"}, ("docker_install_source", "foo", "official, distro")),
    "repo-url-newline": ({"docker_apt_repo_url": "https://download.docker.com/linux\n"}, "docker_apt_repo_url"),
    "repo-url-no-scheme": ({"docker_apt_repo_url": "download.docker.com/linux"}, "docker_apt_repo_url"),
    "key-url-ftp": ({"docker_apt_key_url": "ftp://x/gpg"}, "docker_apt_key_url"),
    "fingerprint-spaces": ({"docker_apt_key_fingerprint": "9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88"},
                           "docker_apt_key_fingerprint"),
    "fingerprint-newline": ({"docker_apt_key_fingerprint": "9DC858229FC7DD38854AE2D88D81803C0EBFCD88\n"},
                            "docker_apt_key_fingerprint"),
    "channel": ({"docker_apt_channel": "nightly"}, "docker_apt_channel"),
    "arch": ({"docker_apt_arch": "aarch64"}, ("docker_apt_arch", "amd64 or arm64")),
    "user-with-space": ({"docker_users": ["bob smith"]}, "docker_users"),
    "user-newline": ({"docker_users": ["deploy\n"]}, "docker_users"),
    "daemon-ip": ({"docker_daemon_options": {"ip": "0.0.0.0.0"}}, "docker_daemon_options"),
    "daemon-not-dict": ({"docker_daemon_options": "local"}, ("docker_daemon_options", "dict")),
    "daemon-list": ({"docker_daemon_options": ["log-driver", "local"]}, ("docker_daemon_options", "dict")),
    "service-state": ({"docker_service_state": "running"}, ("docker_service_state", "running", "started, stopped")),
}
DOCKER_AT_ARGUMENT_SPEC = {"unknown-source-foo", "daemon-not-dict", "daemon-list", "service-state"}

# --- immich
IMMICH_DB_PASSWORD = "SentinelDbPassword0123456789"
IMMICH_ADMIN_PASSWORD = "SentinelAdminPass-77e1"
IMMICH_OAUTH_SECRET = "SentinelOauthSecret-5c2e"
IMMICH_BASE = {"immich_domain": "photos.example.org", "immich_admin_email": "admin@example.org",
               "immich_admin_password": IMMICH_ADMIN_PASSWORD}
ML_ROUTER = {"immich_ml_router_enabled": True, "immich_ml_urls": ["http://172.30.0.1:3003/"],
             "immich_local_ml_enabled": True}
IMMICH_VALID = {
    "valid-overrides": {**IMMICH_BASE, "immich_db_password": IMMICH_DB_PASSWORD,
                        "immich_config_overrides": {"machineLearning": {"clip": {"modelName": "ViT-B-16__openai"}},
                                                    "oauth": {"enabled": False},
                                                    "ffmpeg": {"acceptedVideoCodecs": ["h264"]}}},
    # The explicit opt-out: no admin created by the role (the sign-up stays refused at Traefik).
    "admin-opt-out": {"immich_domain": "photos.example.org", "immich_admin_create": False},
    "oauth-only": {**IMMICH_BASE, "immich_oauth_enabled": True, "immich_password_login_enabled": False,
                   "immich_oauth_issuer_url": "https://auth.example.org/application/o/immich/",
                   "immich_oauth_client_id": "immich", "immich_oauth_client_secret": IMMICH_OAUTH_SECRET},
    "ml-router": {**IMMICH_BASE, **ML_ROUTER, "immich_ml_router_runpod_env_file": "/etc/selfhost-immich/g.env",
                  "immich_ml_router_release_time": "23:59"},
    "fail2ban-tuned": {**IMMICH_BASE, "immich_fail2ban_maxretry": 3, "immich_fail2ban_findtime": 60,
                       "immich_fail2ban_bantime": 86400, "immich_fail2ban_ports": [443],
                       "immich_fail2ban_ignoreip": ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]},
    # Off: the values are not used, so not checked.
    "fail2ban-off": {**IMMICH_BASE, "immich_fail2ban_enabled": False, "immich_fail2ban_ports": []},
}
IMMICH_SECRETS = [IMMICH_DB_PASSWORD, IMMICH_ADMIN_PASSWORD, IMMICH_OAUTH_SECRET]
IMMICH_BAD = {
    "no-domain": ({"immich_domain": UNSET}, "missing required arguments: immich_domain"),
    "url-domain": ({"immich_domain": "https://photos.example.org/"}, "is not a fully qualified"),
    "v2": ({"immich_version": "v2.7.5"}, "is not supported: give an Immich v3 release tag"),
    "floating-tag": ({"immich_version": "release"}, "is not supported"),
    "no-leading-v": ({"immich_version": "3.3.1"}, "is not supported"),
    "db-password-chars": ({"immich_db_password": "Pass-word$1"}, "may only contain A-Z, a-z and 0-9"),
    "thumbs-on-box": ({"immich_thumbs_location": "/mnt/storagebox/immich/thumbs"},
                      "immich_thumbs_location '/mnt/storagebox/immich/thumbs' is inside immich_upload_location"),
    "db-on-box": ({"immich_db_data_location": "/mnt/storagebox/immich/postgres"},
                  "immich_db_data_location '/mnt/storagebox/immich/postgres' is inside"),
    "misspelt-config-key": (
        {"immich_config_overrides": {"machineLearning": {"clip": {"modelname": "ViT-B-16__openai"}}}},
        "Immich does not know: machineLearning.clip.modelname"),
    "misspelt-section": ({"immich_config_overrides": {"machinelearning": {"enabled": False}}},
                         "Immich does not know: machinelearning.enabled"),
    "published-on-all": ({"immich_server_bind_address": "0.0.0.0"}, "is not a loopback address"),
    "pull": ({"immich_pull_policy": "sometimes"}, "value of immich_pull_policy must be one of"),
    "admin-half": ({"immich_admin_password": UNSET},
                   "immich_admin_email and immich_admin_password (vault) are required"),
    # The security issue: no admin means a fresh instance anyone can claim.
    "admin-missing": ({"immich_admin_email": UNSET, "immich_admin_password": UNSET},
                      "immich_admin_email and immich_admin_password (vault) are required"),
    "admin-password-newline": ({"immich_admin_password": IMMICH_ADMIN_PASSWORD + "\n"},
                               "without surrounding whitespace"),
    "admin-email-not-an-address": ({"immich_admin_email": "admin"}, "immich_admin_email and immich_admin_password"),
    "admin-name-newline": ({"immich_admin_name": "Admin\nx"}, "one-line immich_admin_name"),
    "version-newline": ({"immich_version": "v3.3.1\n"}, "is not supported"),
    "domain-newline": ({"immich_domain": "photos.example.org\n"}, "is not a fully qualified"),
    "db-password-newline": ({"immich_db_password": IMMICH_DB_PASSWORD + "\n"}, "may only contain A-Z, a-z and 0-9"),
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
    "smtp": ({"immich_smtp_enabled": True}, "needs immich_smtp_host and immich_smtp_from"),
    "external-domain-path": ({"immich_external_domain": "https://photos.example.org/immich"},
                             "immich_external_domain 'https://photos.example.org/immich' must be a URL"),
    "trash-days-zero": ({"immich_trash_days": 0}, "immich_trash_days (0) between 1 and 3650"),
    "trash-days-word": ({"immich_trash_days": "sixty"}, "immich_trash_days"),
    "oauth-no-secret": ({"immich_oauth_enabled": True, "immich_oauth_client_id": "immich",
                         "immich_oauth_issuer_url": "https://auth.example.org"}, "immich_oauth_enabled needs"),
    # The secret is set: the message must not carry it (the secrets check of every case looks).
    "oauth-http-issuer": ({"immich_oauth_enabled": True, "immich_oauth_client_id": "immich",
                           "immich_oauth_client_secret": IMMICH_OAUTH_SECRET,
                           "immich_oauth_issuer_url": "http://auth.example.org"}, "immich_oauth_enabled needs"),
    "secret-newline": ({"immich_oauth_enabled": True, "immich_oauth_client_id": "immich",
                        "immich_oauth_client_secret": IMMICH_OAUTH_SECRET + "\n",
                        "immich_oauth_issuer_url": "https://auth.example.org"}, "each on one line"),
    "nobody-can-log-in": ({"immich_password_login_enabled": False}, "may only be turned off while OAuth"),
    "metrics-public": ({"immich_metrics_enabled": True, "immich_metrics_bind_address": "0.0.0.0"},
                       "immich_metrics_bind_address '0.0.0.0' must be a loopback or private IPv4 address"),
    "metrics-same-port": ({"immich_metrics_enabled": True, "immich_metrics_microservices_port": 8081},
                          "two different ports"),
    "metrics-server-port": ({"immich_metrics_enabled": True, "immich_metrics_api_port": 2283}, "two different ports"),
    "oauth-auth-method": ({"immich_oauth_token_endpoint_auth_method": "private_key_jwt"},
                          "value of immich_oauth_token_endpoint_auth_method must be one of"),
    # The gateway is written into .env as IMMICH_TRUSTED_PROXIES; the fail2ban jail's values into its file.
    "gateway-not-ipv4": ({"immich_network_gateway": "172.30.0.1\nNO_COLOR="},
                         "immich_network_gateway '172.30.0.1 NO_COLOR=' must be an IPv4 address"),
    "gateway-cidr": ({"immich_network_gateway": "172.30.0.0/24"}, "must be an IPv4 address such as 172.30.0.1"),
    "fail2ban-maxretry-zero": ({"immich_fail2ban_maxretry": 0}, "immich_fail2ban_maxretry (0)"),
    "fail2ban-bantime-negative": ({"immich_fail2ban_bantime": -1}, "immich_fail2ban_bantime (-1) must be at least 1"),
    "fail2ban-findtime-word": ({"immich_fail2ban_findtime": "ten minutes"}, "immich_fail2ban_findtime"),
    "fail2ban-no-ports": ({"immich_fail2ban_ports": []}, "a non-empty list of distinct TCP ports"),
    "fail2ban-port-range": ({"immich_fail2ban_ports": [443, 70000]}, "a non-empty list of distinct TCP ports"),
    "fail2ban-port-twice": ({"immich_fail2ban_ports": [443, 443]}, "a non-empty list of distinct TCP ports"),
    "fail2ban-ignore-everyone": ({"immich_fail2ban_ignoreip": ["0.0.0.0/0"]}, "never a /0"),
    "fail2ban-ignore-v6-everyone": ({"immich_fail2ban_ignoreip": ["::/0"]}, "never a /0"),
    "fail2ban-ignore-name": ({"immich_fail2ban_ignoreip": ["office.example.org"]}, "a list of IPv4/IPv6 addresses"),
    "fail2ban-ignore-two-in-one": ({"immich_fail2ban_ignoreip": ["203.0.113.7 0.0.0.0/0"]},
                                   "a list of IPv4/IPv6 addresses"),
    # The ML cost router: it needs the gateway URL and the role's admin (its API key is made as the admin).
    "ml-router-no-urls": ({"immich_ml_router_enabled": True}, "immich_ml_router_enabled needs the RunPod gateway"),
    "ml-router-no-admin": ({"immich_ml_router_enabled": True, "immich_ml_urls": ["http://172.30.0.1:3003/"],
                            "immich_admin_create": False}, "immich_ml_router_enabled needs"),
    "ml-router-threshold-zero": ({**ML_ROUTER, "immich_ml_router_burst_threshold": 0},
                                 "immich_ml_router_burst_threshold (0) must be a whole number >= 1"),
    "ml-router-idle-timeout": ({**ML_ROUTER, "immich_ml_router_burst_idle_timeout": 3601},
                               "immich_ml_router_burst_idle_timeout (3601)"),
    "ml-router-release-time": ({**ML_ROUTER, "immich_ml_router_release_time": "25:00"},
                               "immich_ml_router_release_time ('25:00') HH:MM"),
    "ml-router-release-days": ({**ML_ROUTER, "immich_ml_router_release_within_days": 0},
                               "immich_ml_router_release_within_days (0) 1-30 days"),
    "ml-router-release-newline": ({**ML_ROUTER, "immich_ml_router_release_time": "03:00\n"},
                                  "immich_ml_router_release_time"),
    "ml-router-entrypoint": ({**ML_ROUTER, "immich_ml_router_gateway_entrypoint": "runpod ml"},
                             "a Traefik entrypoint name"),
    "ml-router-env-relative": ({**ML_ROUTER, "immich_ml_router_runpod_env_file": "guard.env"},
                               "immich_ml_router_runpod_env_file ('guard.env') an absolute path or empty"),
    "fail2ban-ignore-newline": ({"immich_fail2ban_ignoreip": ["203.0.113.7\nenabled = false"]},
                                "a list of IPv4/IPv6 addresses"),
    "fail2ban-not-bool": ({"immich_fail2ban_enabled": "maybe"}, "immich_fail2ban_enabled"),
}

# --- restic
RESTIC_PASSWORD = "sentinel-restic-pass-4b1d"
RESTIC_BASE = {"restic_password": RESTIC_PASSWORD}
RESTIC_VALID: dict = {}
RESTIC_SECRETS = [RESTIC_PASSWORD]
RESTIC_BAD = {
    "no-password": ({"restic_password": UNSET}, "missing required arguments: restic_password"),
    "short-password": ({"restic_password": "short"}, "at least 12 characters"),
    "too-old": ({"restic_version": "0.16.4"}, "0.17.0 or newer"),
    "leading-v": ({"restic_version": "v0.19.1"}, "without a leading v"),
    "arch": ({"restic_arch": "arm"}, "restic_arch 'arm' must be amd64 or arm64"),
    "short-key-id": ({"restic_gpg_fingerprint": "91A6868BD3F7A907"}, "40-hex-digit"),
    "bad-digest": ({"restic_release_sha256": {"arm64": "abc"}}, "64-hex-digit"),
    "unknown-arch-digest": ({"restic_release_sha256": {"riscv64": "a" * 64}}, "arm64/amd64"),
    "user-at-host": ({"restic_ssh_alias": "u123456@u123456.your-storagebox.de"}, "no user@"),
    "port-in-path": ({"restic_repository_path": "23/restic"}, "'23/restic' means a folder"),
    "colon-in-path": ({"restic_repository_path": "host:restic"}, "without ':' or '@'"),
    "relative-path": ({"restic_backup_paths": ["opt/immich/.env"]}, "take absolute paths"),
    "root-path": ({"restic_backup_paths": ["/"]}, "take absolute paths"),
    "empty-dump": ({"restic_dump_command": []}, "restic_dump_command is an argv list"),
    "no-retention": ({"restic_keep_daily": 0, "restic_keep_weekly": 0, "restic_keep_monthly": 0,
                      "restic_keep_yearly": 0}, "at least one above 0"),
    "keep-not-int": ({"restic_keep_daily": "seven"}, "restic_keep_daily"),
    "bad-subset": ({"restic_check_read_data_subset": "all"}, "is not n/t, x% or a size"),
    "ping-no-scheme": ({"restic_ping_url": "hc-ping.com/uuid"}, "empty or http(s) URLs"),
    "bad-delay": ({"restic_backup_randomized_delay": "soon"}, "a time span"),
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
}

# --- runpod_endpoint
RUNPOD_ENDPOINT_BASE = {"runpod_endpoint_api_key": "rpa_" + SECRET.replace("-", "")}
RUNPOD_ENDPOINT_VALID = {
    # Plain http passes to loopback, or elsewhere with the lab switch.
    "loopback-http": {**RUNPOD_ENDPOINT_BASE, "runpod_endpoint_api_url": "http://127.0.0.1:18089/v2"},
    "lab-switch-http": {**RUNPOD_ENDPOINT_BASE, "runpod_endpoint_api_url": "http://172.30.0.1:18089/v2",
                        "runpod_endpoint_api_allow_http": True},
}
RUNPOD_ENDPOINT_SECRETS = [SECRET, SECRET.replace("-", "")]
RUNPOD_ENDPOINT_BAD = {
    "typo": ({"runpod_endpoint_workers_mx": 3}, "did you mean runpod_endpoint_workers_max?"),
    "key-newline": ({"runpod_endpoint_api_key": "rpa_" + SECRET.replace("-", "") + "\n"}, "runpod_endpoint_api_key"),
    "gateway-key-space": ({"runpod_endpoint_gateway_api_key": "rpa x"}, "runpod_endpoint_gateway_api_key"),
    "cidr-slash-0": ({"runpod_endpoint_gateway_allowed_networks": ["1.2.3.4/0"]},
                     "runpod_endpoint_gateway_allowed_networks"),
    "cidr-slash-00": ({"runpod_endpoint_gateway_allowed_networks": ["0.0.0.0/00"]},
                      "runpod_endpoint_gateway_allowed_networks"),
    "cidr-newline": ({"runpod_endpoint_gateway_allowed_networks": ["172.30.0.0/24\n"]},
                     "runpod_endpoint_gateway_allowed_networks"),
    "gateway-wildcard": ({"runpod_endpoint_gateway_address": "0.0.0.0"}, "runpod_endpoint_gateway_address"),
    "gateway-port-0": ({"runpod_endpoint_gateway_port": 0}, "runpod_endpoint_gateway_port"),
    "gateway-port-70000": ({"runpod_endpoint_gateway_port": 70000}, "runpod_endpoint_gateway_port"),
    "duration-0": ({"runpod_endpoint_gateway_dial_timeout": "0s"}, "runpod_endpoint_gateway_dial_timeout"),
    "cuda-newline": ({"runpod_endpoint_min_cuda_version": "12.2\n"}, "runpod_endpoint_min_cuda_version"),
    # DEBUG/dashboard while the gateway's key is served: the traefik role refuses it (traefik_dynamic_secrets).
    "workers-negative": ({"runpod_endpoint_workers_min": -1}, "runpod_endpoint_workers_min"),
    # The key travels to the API URL, which is also rendered into the guard's env file (read by systemd).
    "api-url-plain-http": ({"runpod_endpoint_api_url": "http://api.runpod.example/v2"},
                           "unless runpod_endpoint_api_allow_http is true"),
    "api-url-newline": ({"runpod_endpoint_api_url": "https://api.runpod.io/v2\n"}, "runpod_endpoint_api_url must"),
    "api-url-credentials": ({"runpod_endpoint_api_url": "https://user:pw@api.runpod.io/v2"},
                            "runpod_endpoint_api_url must"),
    "api-url-env-injection": ({"runpod_endpoint_api_url": "https://api.runpod.io/v2\nRUNPOD_API_KEY=x"},
                              "runpod_endpoint_api_url must"),
    "api-url-plain-http-private": ({"runpod_endpoint_api_url": "http://10.0.0.5:8080/v2"},
                                   "runpod_endpoint_api_url must"),
    "api-url-space": ({"runpod_endpoint_api_url": "https://api.runpod.io/v2 x"}, "runpod_endpoint_api_url must"),
    "name-newline": ({"runpod_endpoint_name": "immich-ml\n"}, "runpod_endpoint_name"),
    "schedule-newline": ({"runpod_endpoint_guard_schedule": "daily\n"}, "runpod_endpoint_guard_schedule"),
}

# --- sshfs_storagebox
SSHFS_STORAGEBOX_BASE = {"sshfs_storagebox_host": "u1.your-storagebox.de", "sshfs_storagebox_user": "u1",
                         "sshfs_storagebox_trust_first_key": True}
SSHFS_STORAGEBOX_API = {"sshfs_storagebox_api_token": SECRET.replace("-", ""), "sshfs_storagebox_id": 1}
SSHFS_STORAGEBOX_VALID = {
    # The token alone sets the snapshot plan; a lab's plain-HTTP API stand-in is allowed by the switch.
    "lab-http-api": {**SSHFS_STORAGEBOX_BASE, **SSHFS_STORAGEBOX_API, "sshfs_storagebox_api_url": "http://hetzner-fake:8080/v1",
                     "sshfs_storagebox_api_allow_http": True},
    "loopback-http-api": {**SSHFS_STORAGEBOX_BASE, **SSHFS_STORAGEBOX_API,
                          "sshfs_storagebox_api_url": "http://127.0.0.1:8080/v1"},
    "token-without-plan": {**SSHFS_STORAGEBOX_BASE, **SSHFS_STORAGEBOX_API, "sshfs_storagebox_snapshot_plan": {},
                           "sshfs_storagebox_id": 0},
}
SSHFS_STORAGEBOX_SECRETS = [SECRET, SECRET.replace("-", "")]
SSHFS_STORAGEBOX_BAD = {
    "typo": ({"sshfs_storagebox_mount_pth": "/mnt/x"}, "did you mean sshfs_storagebox_mount_path?"),
    "immich-dir-up": ({"sshfs_storagebox_immich_dir": "../../etc"}, "sshfs_storagebox_immich_dir"),
    "immich-dir-absolute": ({"sshfs_storagebox_immich_dir": "/immich"}, "sshfs_storagebox_immich_dir"),
    "subdir-up": ({"sshfs_storagebox_immich_subdirs": ["library/../.."]}, "sshfs_storagebox_immich_subdirs"),
    "mount-etc": ({"sshfs_storagebox_mount_path": "/etc"}, "sshfs_storagebox_mount_path"),
    "mount-relative": ({"sshfs_storagebox_mount_path": "mnt/box"}, "sshfs_storagebox_mount_path"),
    "mount-up": ({"sshfs_storagebox_mount_path": "/mnt/../etc"}, "sshfs_storagebox_mount_path"),
    "mount-newline": ({"sshfs_storagebox_mount_path": "/mnt/box\n"}, "sshfs_storagebox_mount_path"),
    "host-newline": ({"sshfs_storagebox_host": "u1.your-storagebox.de\n"}, "sshfs_storagebox_host"),
    "user-newline": ({"sshfs_storagebox_user": "u1\nProxyCommand x"}, "sshfs_storagebox_user"),
    "alias-wildcard": ({"sshfs_storagebox_ssh_alias": "*"}, "sshfs_storagebox_ssh_alias"),
    "bound-unit-path": ({"sshfs_storagebox_bound_units": ["../../../etc/cron.d/x"]}, "sshfs_storagebox_bound_units"),
    "key-in-etc": ({"sshfs_storagebox_key_path": "/etc/shadow"}, "sshfs_storagebox_key_path"),
    "ssh-option-injection": ({"sshfs_storagebox_throughput_options": ["Ciphers=x\nProxyCommand=sh"]},
                             "sshfs_storagebox_throughput_options"),
    "port-0": ({"sshfs_storagebox_port": 0}, "sshfs_storagebox_port"),
    "timeout-0": ({"sshfs_storagebox_connect_timeout": 0}, "sshfs_storagebox_connect_timeout"),
    "fingerprint-newline": ({"sshfs_storagebox_host_key_fingerprint": "SHA256:" + "A" * 43 + "\n"},
                            "sshfs_storagebox_host_key_fingerprint"),
    "dir-mode": ({"sshfs_storagebox_immich_dir_mode": "777"}, "sshfs_storagebox_immich_dir_mode"),
    "webdav-home-up": ({"sshfs_storagebox_webdav_subaccount_enabled": True, "sshfs_storagebox_id": 1,
                        "sshfs_storagebox_api_token": "tok",
                        "sshfs_storagebox_webdav_subaccount_password": "Aa1!aaaaaaaa",
                        "sshfs_storagebox_webdav_subaccount_home": "a/../../b"},
                       "sshfs_storagebox_webdav_subaccount_home"),
    "token-newline": ({"sshfs_storagebox_api_enable_ssh": True, "sshfs_storagebox_id": 1,
                       "sshfs_storagebox_api_token": SECRET + "\n"}, "sshfs_storagebox_api_token"),
    "no-fingerprint-no-opt-in": ({"sshfs_storagebox_trust_first_key": False},
                                 "sshfs_storagebox_trust_first_key: is false and sshfs_storagebox_host_key_"
                                 "fingerprint is empty"),
    "ping-url-newline": ({"sshfs_storagebox_failure_ping_url": "https://hc-ping.com/x\n"},
                         "sshfs_storagebox_failure_ping_url"),
    "ping-url-ftp": ({"sshfs_storagebox_failure_ping_url": "ftp://hc-ping.com/x"}, "sshfs_storagebox_failure_ping_url"),
    "ping-url-space": ({"sshfs_storagebox_failure_ping_url": "https://hc-ping.com/x -o /etc/passwd"},
                       "sshfs_storagebox_failure_ping_url"),
    "alert-after-0": ({"sshfs_storagebox_alert_after": 0}, "sshfs_storagebox_alert_after"),
    "alert-after-negative": ({"sshfs_storagebox_alert_after": -300}, "sshfs_storagebox_alert_after"),
    "oom-adjust-below-range": ({"sshfs_storagebox_oom_score_adjust": -1001}, "sshfs_storagebox_oom_score_adjust"),
    "token-without-id": ({**SSHFS_STORAGEBOX_API, "sshfs_storagebox_id": 0},
                         "sshfs_storagebox_id (the box's numeric ID, a positive integer"),
    "api-url-plain-http": ({**SSHFS_STORAGEBOX_API, "sshfs_storagebox_api_url": "http://api.hetzner.example/v1"},
                           "unless sshfs_storagebox_api_allow_http is true"),
    "api-url-newline": ({**SSHFS_STORAGEBOX_API, "sshfs_storagebox_api_url": "https://api.hetzner.com/v1\n"},
                        "sshfs_storagebox_api_url empty or https://"),
    "snapshot-plan-hour-24": ({**SSHFS_STORAGEBOX_API,
                               "sshfs_storagebox_snapshot_plan": {"max_snapshots": 14, "hour": 24, "minute": 0}},
                              "sshfs_storagebox_snapshot_plan must be {} or"),
    "snapshot-plan-no-snapshots": ({**SSHFS_STORAGEBOX_API,
                                    "sshfs_storagebox_snapshot_plan": {"max_snapshots": 0, "hour": 1, "minute": 30}},
                                   "sshfs_storagebox_snapshot_plan must be {} or"),
    "snapshot-plan-unknown-key": ({**SSHFS_STORAGEBOX_API, "sshfs_storagebox_snapshot_plan": {"keep": 14}},
                                  "sshfs_storagebox_snapshot_plan must be {} or"),
}

# --- traefik
TRAEFIK_CF_TOKEN = "sentinel-cf-token-7f3a9c"
TRAEFIK_BASE = {"traefik_acme_email": "admin@example.org", "traefik_acme_challenge": "http",
                "traefik_acme_domains": ["photos.example.org"]}
TRAEFIK_VALID = {
    "wildcard-with-dns": {**TRAEFIK_BASE, "traefik_acme_challenge": "dns-cloudflare",
                          "traefik_cloudflare_dns_api_token": TRAEFIK_CF_TOKEN,
                          "traefik_acme_domains": ["example.org", "*.example.org"]},
    # The secrets guard fires only while a served file holds a secret (traefik_dynamic_secrets) ...
    "debug-without-dynamic-secrets": {**TRAEFIK_BASE, "traefik_log_level": "DEBUG"},
    # ... and then allows INFO, and an access log that keeps other headers but redacts Authorization.
    "dynamic-secrets-at-info": {**TRAEFIK_BASE, "traefik_dynamic_secrets": True, "traefik_access_log_enabled": True,
                                "traefik_access_log_headers": {"User-Agent": "keep", "Authorization": "redact"},
                                "traefik_request_accept_grace_timeout": "0s", "traefik_grace_timeout": "2m",
                                "traefik_cert_resolver": "le_prod-1",
                                "traefik_acme_ca_server": "https://acme-staging-v02.api.letsencrypt.org/directory"},
}
TRAEFIK_SECRETS = [SECRET, TRAEFIK_CF_TOKEN]
# A valid host whose dynamic configuration holds a secret, with the marker secret as its Cloudflare token.
TRAEFIK_SECRET_HOLDER = {"traefik_dynamic_secrets": True, "traefik_acme_challenge": "dns-cloudflare",
                         "traefik_cloudflare_dns_api_token": SECRET}
TRAEFIK_BAD = {
    "metrics-public": ({"traefik_metrics_enabled": True, "traefik_metrics_address": "0.0.0.0:8083"},
                       'traefik_metrics_address "0.0.0.0:8083" must be a loopback or private IPv4 address'),
    "metrics-no-port": ({"traefik_metrics_enabled": True, "traefik_metrics_address": "127.0.0.1"},
                        "traefik_metrics_address"),
    "metrics-name-taken": ({"traefik_metrics_enabled": True,
                            "traefik_extra_entrypoints": {"metrics": {"address": ":9100"}}},
                           "no extra entrypoint may be named metrics"),
    "typo": ({"traefik_dashbord_enabled": True}, "did you mean traefik_dashboard_enabled?"),
    "no-email": ({"traefik_acme_email": UNSET}, "missing required arguments: traefik_acme_email"),
    "bad-email": ({"traefik_acme_email": "admin"}, "is not an e-mail address"),
    "arch": ({"traefik_arch": "x86_64"}, "traefik_arch 'x86_64' must be amd64 or arm64"),
    "email-newline": ({"traefik_acme_email": "admin@example.org\n"}, "traefik_acme_email"),
    "unknown-challenge": ({"traefik_acme_challenge": "tls-alpn"},
                          "value of traefik_acme_challenge must be one of: dns-cloudflare, http, got: tls-alpn"),
    "no-dot": ({"traefik_acme_domains": ["photos"]}, "'photos' is not a fully qualified domain"),
    "url-not-name": ({"traefik_acme_domains": ["https://photos.example.org/"]}, "is not a fully qualified domain name"),
    "trailing-dot": ({"traefik_acme_domains": ["photos.example.org."]}, "is not a fully qualified"),
    "wildcard-http": ({"traefik_acme_domains": ["*.example.org"]}, "only the DNS-01 challenge"),
    "too-old": ({"traefik_version": "3.5.3"}, "3.6.1 or newer"),
    "leading-v": ({"traefik_version": "v3.7.15"}, "without a\nleading v"),
    "version-newline": ({"traefik_version": "3.7.15\n"}, "traefik_version"),
    "dns-without-token": ({"traefik_acme_challenge": "dns-cloudflare"},
                          "traefik_cloudflare_dns_api_token must hold a Cloudflare API"),
    "cf-token-newline": ({"traefik_acme_challenge": "dns-cloudflare",
                          "traefik_cloudflare_dns_api_token": SECRET + "\n"}, "traefik_cloudflare_dns_api_token"),
    "dynamic-dir-etc": ({"traefik_dynamic_dir": "/etc"}, "traefik_dynamic_dir"),
    "dynamic-dir-up": ({"traefik_dynamic_dir": "/etc/traefik/../../usr"}, "traefik_dynamic_dir"),
    "read-timeout-0": ({"traefik_read_timeout": "0"}, "traefik_read_timeout"),
    "idle-timeout-0s": ({"traefik_idle_timeout": "0s"}, "traefik_idle_timeout"),
    "grace-no-unit": ({"traefik_grace_timeout": "30"}, "traefik_grace_timeout"),
    "grace-zero": ({"traefik_grace_timeout": "0s"}, "traefik_grace_timeout"),
    "grace-malformed": ({"traefik_grace_timeout": "30 s"},
                        "traefik_grace_timeout: must be whole seconds or minutes of at least 1s"),
    "accept-grace-newline": ({"traefik_request_accept_grace_timeout": "2s\napi: {insecure: true}"},
                             "traefik_request_accept_grace_timeout"),
    "entrypoints-null": ({"traefik_extra_entrypoints": None}, "traefik_extra_entrypoints"),
    "entrypoint-port-70000": ({"traefik_extra_entrypoints": {"x": {"address": ":70000"}}},
                              "traefik_extra_entrypoints"),
    "entrypoint-port-0": ({"traefik_extra_entrypoints": {"x": {"address": ":0"}}}, "traefik_extra_entrypoints"),
    "reserved-entrypoint": ({"traefik_extra_entrypoints": {"websecure": {"address": ":8443"}}},
                            "web, websecure and traefik are reserved"),
    "firewall-port-0": ({"traefik_firewall_extra_rules": [{"port": "0"}]}, "traefik_firewall_extra_rules"),
    "ssh-port-70000": ({"traefik_firewall_ssh_port": 70000}, "traefik_firewall_ssh_port"),
    "dashboard-without-auth": ({"traefik_dashboard_enabled": True, "traefik_dashboard_host": "traefik.example.org"},
                               "never served without authentication"),
    "dashboard-user-without-hash": ({"traefik_dashboard_enabled": True, "traefik_dashboard_host": "t.example.org",
                                     "traefik_dashboard_users": ["admin"]}, "traefik_dashboard_users"),
    # Interpolated into Traefik's YAML: a line break or colon in a name would add settings of its own.
    "cert-resolver-newline": ({"traefik_cert_resolver": "acme\napi: {insecure: true}"},
                              "traefik_cert_resolver must be a name of letters, digits, '-' and '_'"),
    "cert-resolver-colon": ({"traefik_cert_resolver": "acme: x"}, "traefik_cert_resolver"),
    "entrypoint-name-injection": ({"traefik_extra_entrypoints": {"gw:\n  api": {"address": "127.0.0.1:3003"}}},
                                  "traefik_extra_entrypoints"),
    "ca-server-newline": ({"traefik_acme_ca_server": "https://acme.example.org/dir\napi: {insecure: true}"},
                          "traefik_acme_ca_server"),
    "ca-server-plain-http": ({"traefik_acme_ca_server": "http://acme.example.org/dir"}, "traefik_acme_ca_server"),
    "access-log-header-injection": ({"traefik_access_log_headers": {"X: y\n": "keep"}}, "traefik_access_log_headers"),
    # A file Traefik serves holds a secret (the RunPod gateway's key): nothing may show it. The Cloudflare
    # token is the marker secret here: the refusal must not print it.
    "debug-with-dynamic-secrets": ({"traefik_dynamic_secrets": True, "traefik_log_level": "DEBUG"},
                                   "traefik_dynamic_secrets is true (a file Traefik serves holds a secret"),
    "debug-with-secret-holder": ({**TRAEFIK_SECRET_HOLDER, "traefik_log_level": "DEBUG"},
                                 "traefik_log_level must not be DEBUG or TRACE (is DEBUG"),
    "trace-with-secret-holder": ({**TRAEFIK_SECRET_HOLDER, "traefik_log_level": "TRACE"},
                                 "traefik_dynamic_secrets is true"),
    "dashboard-with-secret-holder": ({**TRAEFIK_SECRET_HOLDER, "traefik_dashboard_enabled": True,
                                      "traefik_dashboard_host": "t.example.org",
                                      "traefik_dashboard_users": ["admin:$2y$05$" + "a" * 53]},
                                     "traefik_dashboard_enabled must be false (is True"),
    "access-log-keeps-authorization": ({**TRAEFIK_SECRET_HOLDER, "traefik_access_log_enabled": True,
                                        "traefik_access_log_headers": {"authorization": "keep"}},
                                       "traefik_access_log_headers must not map Authorization to keep"),
    "access-log-keeps-by-default": ({**TRAEFIK_SECRET_HOLDER, "traefik_access_log_enabled": True,
                                     "traefik_access_log_headers_default_mode": "keep"},
                                    "traefik_access_log_headers_default_mode is keep"),
}

# role -> (valid base, more valid hosts, bad cases, secrets, cases that must fail at the argument-spec validation)
ROLES = {
    "docker": (DOCKER_BASE, DOCKER_VALID, DOCKER_BAD, DOCKER_SECRETS, DOCKER_AT_ARGUMENT_SPEC),
    "immich": (IMMICH_BASE, IMMICH_VALID, IMMICH_BAD, IMMICH_SECRETS, set()),
    "restic": (RESTIC_BASE, RESTIC_VALID, RESTIC_BAD, RESTIC_SECRETS, set()),
    "runpod_endpoint": (RUNPOD_ENDPOINT_BASE, RUNPOD_ENDPOINT_VALID, RUNPOD_ENDPOINT_BAD, RUNPOD_ENDPOINT_SECRETS,
                        set()),
    "sshfs_storagebox": (SSHFS_STORAGEBOX_BASE, SSHFS_STORAGEBOX_VALID, SSHFS_STORAGEBOX_BAD, SSHFS_STORAGEBOX_SECRETS,
                         set()),
    "traefik": (TRAEFIK_BASE, TRAEFIK_VALID, TRAEFIK_BAD, TRAEFIK_SECRETS, set()),
}

PLAY = """\
- name: Check the role's input
  hosts: all
  gather_facts: false
  roles:
    - role: selfhost.immich.{role}
"""


@dataclass
class HostResult:
    recap: str  # the host's PLAY RECAP counters, e.g. "ok=3 changed=0 unreachable=0 failed=1 ..."
    messages: str  # the msg of every failed task of the host, whitespace-folded (Ansible folds long messages)
    tasks: list[str]  # the names of the host's failed tasks

    @property
    def refused(self) -> bool:
        """Failed on a check, and nothing was (or would have been) changed before."""
        return "failed=1" in self.recap and "changed=0" in self.recap

    @property
    def passed(self) -> bool:
        return "failed=0" in self.recap and "unreachable=0" in self.recap


@dataclass
class CheckRun:
    argv: list[str]
    output: str  # stdout + stderr of the whole run
    hosts: dict[str, HostResult]


def _fold(text: str) -> str:
    return " ".join(text.split())


def check_role(role: str, cases: dict[str, dict], work_dir: Path, tags: str = "") -> CheckRun:
    """Run ``role``'s input checks (tag ``<role>_validate`` unless ``tags``) once for every case (name -> vars)."""
    python = sys.executable
    hosts = {case: {**variables, "ansible_connection": "local", "ansible_python_interpreter": python}
             for case, variables in cases.items()}
    (work_dir / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (work_dir / "play.yml").write_text(PLAY.format(role=role))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
           "ANSIBLE_CONFIG": str(work_dir / "none.cfg"),  # not the repo's ansible.cfg (lab inventory)
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORKS": "20", "ANSIBLE_LOCALHOST_WARNING": "0",
           "ANSIBLE_HOST_KEY_CHECKING": "0"}
    argv = [str(Path(python).with_name("ansible-playbook")), "-i", str(work_dir / "inventory.yml"), "--check",
            "--tags", tags or f"{role}_validate", str(work_dir / "play.yml")]
    result = subprocess.run(argv, cwd=work_dir, env=env, capture_output=True, text=True, timeout=900, check=False)
    output = result.stdout + result.stderr
    messages: dict[str, list[str]] = {case: [] for case in cases}
    tasks: dict[str, list[str]] = {case: [] for case in cases}
    task, error, in_error = "", "", False
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task, error = line[len("TASK ["):].rsplit("]", 1)[0], ""
        # ansible-core prints "[ERROR]: Task failed: Action failed: <msg>" above a failure, also for a no_log task
        # (the fatal line is then censored); the same message for several hosts is printed once.
        if line.startswith("[ERROR]: "):
            error, in_error = line.removeprefix("[ERROR]: ").removeprefix("Task failed: ").removeprefix(
                "Action failed: "), True
            continue
        if in_error:
            if line.startswith("Origin: ") or not line.strip():
                in_error = False
            else:
                error += " " + line
            continue
        # "fatal: [case]: FAILED! => {...}" or, for a looped check, "failed: [case] (item=...) => {...}".
        failure = re.match(r"^(?:fatal: \[([^]]+)\]: FAILED!|failed: \[([^]]+)\] \(item=.*?\)) => (\{.*\})$", line)
        if not failure or (failure.group(1) or failure.group(2)) not in messages:
            continue
        answer = json.loads(failure.group(3))
        msg = answer.get("msg", "")
        text = " ".join(map(str, msg)) if isinstance(msg, list) else str(msg)
        if "censored" in answer:  # a no_log check: the user reads the [ERROR] line above it (or the task's name)
            text = error or task
        messages[failure.group(1) or failure.group(2)].append(text)
        tasks[failure.group(1) or failure.group(2)].append(task)
    found = {}
    for case in cases:
        recap = re.search(rf"^{re.escape(case)}\s+:\s+(.*)$", output, re.M)
        found[case] = HostResult(recap.group(1) if recap else "no recap", _fold(" ".join(messages[case])), tasks[case])
    return CheckRun(argv, output, found)


def assert_refused(run: CheckRun, case: str, expected: str | tuple[str, ...], task: str = "") -> None:
    """The case failed on a check (in ``task`` if given) before any change, with every ``expected`` text."""
    host = run.hosts[case]
    assert host.refused, f"{case}: not refused ({host.recap})\n{run.output[-3000:]}"
    for text in (expected,) if isinstance(expected, str) else expected:
        assert _fold(text) in host.messages, f"{case}: message lacks {text!r}: {host.messages[:600]}"
    assert all(task in name for name in host.tasks), f"{case}: failed in {host.tasks}, not in {task!r}"


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """role -> its one CheckRun (every valid and bad case of the role), made on first use."""
    runs: dict[str, CheckRun] = {}

    def run(role: str) -> CheckRun:
        if role not in runs:
            base, valid, bad, *_ = ROLES[role]
            cases = {"valid": base, **valid}
            for case, (overrides, _) in bad.items():
                cases[case] = {k: v for k, v in {**base, **overrides}.items() if v is not UNSET}
            runs[role] = check_role(role, cases, tmp_path_factory.mktemp(role))
        return runs[role]

    return run


@pytest.mark.parametrize(("role", "case"), [(r, c) for r, (_, valid, *_) in ROLES.items() for c in ["valid", *valid]])
def test_valid_input_passes(checks, role, case):
    assert checks(role).hosts[case].passed, checks(role).output[-3000:]


@pytest.mark.parametrize(("role", "case"), [(r, c) for r, (_, _, bad, *_) in ROLES.items() for c in bad])
def test_bad_input_fails_before_any_change_with_a_clear_message(checks, role, case):
    _, _, bad, _, at_argument_spec = ROLES[role]
    assert_refused(checks(role), case, bad[case][1], ARGUMENT_SPEC_TASK if case in at_argument_spec else "")


@pytest.mark.parametrize("role", list(ROLES))
def test_no_secret_reaches_the_output(checks, role):
    _, _, bad, secrets, _ = ROLES[role]
    assert len(bad) >= 10, "a role's corpus tries at least ten malformed values"
    run = checks(role)
    assert run.hosts["valid"].passed
    for secret in secrets:
        assert secret not in run.output


def test_traefik_guard_holds_whatever_the_tags(tmp_path):
    """The traefik guard is tagged always: run with --tags traefik_install, which selects none of validate.yml, it
    still refuses DEBUG while the dynamic configuration holds a secret, before any change (check mode)."""
    run = check_role("traefik", {
        "valid": TRAEFIK_BASE,
        "debug-with-secret-holder": {**TRAEFIK_BASE, **TRAEFIK_SECRET_HOLDER, "traefik_log_level": "DEBUG"},
        "dashboard-with-secret-holder": {**TRAEFIK_BASE, **TRAEFIK_SECRET_HOLDER, "traefik_dashboard_enabled": True},
        # Refused only by validate.yml: passes here, so the tag really left the validation out.
        "bad-email-only-validate-refuses": {**TRAEFIK_BASE, "traefik_acme_email": "admin"},
    }, tmp_path, tags="traefik_install")
    assert run.argv[run.argv.index("--tags") + 1] == "traefik_install"
    assert run.hosts["valid"].passed, run.output[-4000:]
    assert run.hosts["bad-email-only-validate-refuses"].passed, run.output[-4000:]
    assert_refused(run, "debug-with-secret-holder", "traefik_log_level must not be DEBUG or TRACE (is DEBUG")
    assert_refused(run, "dashboard-with-secret-holder", "traefik_dashboard_enabled must be false (is True")
    assert SECRET not in run.output
