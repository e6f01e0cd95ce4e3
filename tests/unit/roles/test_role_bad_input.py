"""A bad-input corpus per role: each malformed value is refused before anything is written, naming the variable.

One ansible-playbook run per role (tests/unit/utils/role_checks.py), in check mode and limited to the role's checks
(tag <role>_validate; the shared preflight always runs). Every case is its own inventory host carrying the bad
value as a host variable, so one run tries them all and every host must fail on its own message. A valid host must
pass, and no marker secret may appear in the output.
"""

from __future__ import annotations

import pytest
from ansible_collections.selfhost.immich.tests.unit.utils import role_checks
from ansible_collections.selfhost.immich.tests.unit.utils.role_checks import assert_refused, check_role

SECRET = "marker-secret-9f8e7d"

BASE = {
    "docker": {},
    "sshfs_storagebox": {"sshfs_storagebox_host": "u1.your-storagebox.de", "sshfs_storagebox_user": "u1",
                         "sshfs_storagebox_trust_first_key": True},
    "traefik": {"traefik_acme_email": "admin@example.org", "traefik_acme_challenge": "http",
                "traefik_acme_domains": ["photos.example.org"]},
    "runpod_endpoint": {"runpod_endpoint_api_key": "rpa_" + SECRET.replace("-", "")},
}

# traefik: a valid host whose dynamic configuration holds a secret, with the marker secret as its Cloudflare token.
TRAEFIK_SECRET_HOLDER = {"traefik_dynamic_secrets": True, "traefik_acme_challenge": "dns-cloudflare",
                         "traefik_cloudflare_dns_api_token": SECRET}

# role -> case id -> (overrides, text the failure must contain; the variable's name where one is at fault)
CASES: dict[str, dict[str, tuple[dict, str]]] = {
    "docker": {
        "typo": ({"docker_instal_source": "distro"}, "did you mean docker_install_source?"),
        "unknown-source": ({"docker_install_source": "snap"}, "docker_install_source"),
        "repo-url-newline": ({"docker_apt_repo_url": "https://download.docker.com/linux\n"}, "docker_apt_repo_url"),
        "repo-url-no-scheme": ({"docker_apt_repo_url": "download.docker.com/linux"}, "docker_apt_repo_url"),
        "key-url-ftp": ({"docker_apt_key_url": "ftp://x/gpg"}, "docker_apt_key_url"),
        "fingerprint-spaces": ({"docker_apt_key_fingerprint": "9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88"},
                               "docker_apt_key_fingerprint"),
        "fingerprint-newline": ({"docker_apt_key_fingerprint": "9DC858229FC7DD38854AE2D88D81803C0EBFCD88\n"},
                                "docker_apt_key_fingerprint"),
        "channel": ({"docker_apt_channel": "nightly"}, "docker_apt_channel"),
        "user-with-space": ({"docker_users": ["bob smith"]}, "docker_users"),
        "user-newline": ({"docker_users": ["deploy\n"]}, "docker_users"),
        "daemon-ip": ({"docker_daemon_options": {"ip": "0.0.0.0.0"}}, "docker_daemon_options"),
        "daemon-not-dict": ({"docker_daemon_options": "local"}, "docker_daemon_options"),
        "service-state": ({"docker_service_state": "running"}, "docker_service_state"),
    },
    "sshfs_storagebox": {
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
        "bound-unit-path": ({"sshfs_storagebox_bound_units": ["../../../etc/cron.d/x"]},
                            "sshfs_storagebox_bound_units"),
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
        "ping-url-ftp": ({"sshfs_storagebox_failure_ping_url": "ftp://hc-ping.com/x"},
                         "sshfs_storagebox_failure_ping_url"),
        "ping-url-space": ({"sshfs_storagebox_failure_ping_url": "https://hc-ping.com/x -o /etc/passwd"},
                           "sshfs_storagebox_failure_ping_url"),
        "alert-after-0": ({"sshfs_storagebox_alert_after": 0}, "sshfs_storagebox_alert_after"),
        "alert-after-negative": ({"sshfs_storagebox_alert_after": -300}, "sshfs_storagebox_alert_after"),
        "oom-adjust-below-range": ({"sshfs_storagebox_oom_score_adjust": -1001},
                                   "sshfs_storagebox_oom_score_adjust"),
    },
    "traefik": {
        "typo": ({"traefik_dashbord_enabled": True}, "did you mean traefik_dashboard_enabled?"),
        "version-newline": ({"traefik_version": "3.7.15\n"}, "traefik_version"),
        "email-newline": ({"traefik_acme_email": "admin@example.org\n"}, "traefik_acme_email"),
        "dynamic-dir-etc": ({"traefik_dynamic_dir": "/etc"}, "traefik_dynamic_dir"),
        "dynamic-dir-up": ({"traefik_dynamic_dir": "/etc/traefik/../../usr"}, "traefik_dynamic_dir"),
        "read-timeout-0": ({"traefik_read_timeout": "0"}, "traefik_read_timeout"),
        "idle-timeout-0s": ({"traefik_idle_timeout": "0s"}, "traefik_idle_timeout"),
        "entrypoints-null": ({"traefik_extra_entrypoints": None}, "traefik_extra_entrypoints"),
        "entrypoint-port-70000": ({"traefik_extra_entrypoints": {"x": {"address": ":70000"}}},
                                  "traefik_extra_entrypoints"),
        "entrypoint-port-0": ({"traefik_extra_entrypoints": {"x": {"address": ":0"}}}, "traefik_extra_entrypoints"),
        "firewall-port-0": ({"traefik_firewall_extra_rules": [{"port": "0"}]}, "traefik_firewall_extra_rules"),
        "ssh-port-70000": ({"traefik_firewall_ssh_port": 70000}, "traefik_firewall_ssh_port"),
        "dashboard-user-without-hash": ({"traefik_dashboard_enabled": True, "traefik_dashboard_host": "t.example.org",
                                         "traefik_dashboard_users": ["admin"]}, "traefik_dashboard_users"),
        "cf-token-newline": ({"traefik_acme_challenge": "dns-cloudflare",
                              "traefik_cloudflare_dns_api_token": SECRET + "\n"}, "traefik_cloudflare_dns_api_token"),
        # Interpolated into Traefik's YAML: a line break or colon in a name would add settings of its own.
        "cert-resolver-newline": ({"traefik_cert_resolver": "acme\napi: {insecure: true}"}, "traefik_cert_resolver"),
        "cert-resolver-colon": ({"traefik_cert_resolver": "acme: x"}, "traefik_cert_resolver"),
        "entrypoint-name-injection": ({"traefik_extra_entrypoints": {"gw:\n  api": {"address": "127.0.0.1:3003"}}},
                                      "traefik_extra_entrypoints"),
        "ca-server-newline": ({"traefik_acme_ca_server": "https://acme.example.org/dir\napi: {insecure: true}"},
                              "traefik_acme_ca_server"),
        "ca-server-plain-http": ({"traefik_acme_ca_server": "http://acme.example.org/dir"}, "traefik_acme_ca_server"),
        "access-log-header-injection": ({"traefik_access_log_headers": {"X: y\n": "keep"}},
                                        "traefik_access_log_headers"),
        "grace-no-unit": ({"traefik_grace_timeout": "30"}, "traefik_grace_timeout"),
        "grace-zero": ({"traefik_grace_timeout": "0s"}, "traefik_grace_timeout"),
        "accept-grace-newline": ({"traefik_request_accept_grace_timeout": "2s\napi: {insecure: true}"},
                                 "traefik_request_accept_grace_timeout"),
        # A file Traefik serves holds a secret (the RunPod gateway's key): nothing may show it. The Cloudflare
        # token is the marker secret here: the refusal must not print it.
        "debug-with-dynamic-secrets": ({**TRAEFIK_SECRET_HOLDER, "traefik_log_level": "DEBUG"},
                                       "traefik_log_level must not be DEBUG or TRACE (is DEBUG"),
        "trace-with-dynamic-secrets": ({**TRAEFIK_SECRET_HOLDER, "traefik_log_level": "TRACE"},
                                       "traefik_dynamic_secrets is true"),
        "dashboard-with-dynamic-secrets": ({**TRAEFIK_SECRET_HOLDER, "traefik_dashboard_enabled": True,
                                            "traefik_dashboard_host": "t.example.org",
                                            "traefik_dashboard_users": ["admin:$2y$05$" + "a" * 53]},
                                           "traefik_dashboard_enabled must be false (is True"),
        "access-log-keeps-authorization": ({**TRAEFIK_SECRET_HOLDER, "traefik_access_log_enabled": True,
                                            "traefik_access_log_headers": {"authorization": "keep"}},
                                           "traefik_access_log_headers must not map Authorization to keep"),
        "access-log-keeps-by-default": ({**TRAEFIK_SECRET_HOLDER, "traefik_access_log_enabled": True,
                                         "traefik_access_log_headers_default_mode": "keep"},
                                        "traefik_access_log_headers_default_mode is keep"),
    },
    "runpod_endpoint": {
        "typo": ({"runpod_endpoint_workers_mx": 3}, "did you mean runpod_endpoint_workers_max?"),
        "key-newline": ({"runpod_endpoint_api_key": "rpa_" + SECRET.replace("-", "") + "\n"},
                        "runpod_endpoint_api_key"),
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
        # The key travels to the API URLs; the guard's is rendered into its env file (read by systemd).
        "api-url-plain-http": ({"runpod_endpoint_api_url": "http://api.runpod.example/v2"},
                               "unless runpod_endpoint_api_allow_http is true"),
        "api-url-newline": ({"runpod_endpoint_api_url": "https://api.runpod.io/v2\n"}, "runpod_endpoint_api_url must"),
        "api-url-credentials": ({"runpod_endpoint_api_url": "https://user:pw@api.runpod.io/v2"},
                                "runpod_endpoint_api_url must"),
        "guard-url-env-injection": ({"runpod_endpoint_guard_api_url": "https://api.runpod.io/v2\nRUNPOD_API_KEY=x"},
                                    "runpod_endpoint_guard_api_url must"),
        "guard-url-plain-http": ({"runpod_endpoint_guard_api_url": "http://10.0.0.5:8080/v2"},
                                 "runpod_endpoint_guard_api_url must"),
        "guard-url-space": ({"runpod_endpoint_guard_api_url": "https://api.runpod.io/v2 x"},
                            "runpod_endpoint_guard_api_url must"),
        "name-newline": ({"runpod_endpoint_name": "immich-ml\n"}, "runpod_endpoint_name"),
        "schedule-newline": ({"runpod_endpoint_guard_schedule": "daily\n"}, "runpod_endpoint_guard_schedule"),
    },
}


@pytest.mark.parametrize("role", sorted(CASES))
def test_bad_input_corpus_is_refused_before_any_write(role, tmp_path):
    assert len(CASES[role]) >= 10
    cases = {"valid": BASE[role], **{case: {**BASE[role], **overrides} for case, (overrides, _) in CASES[role].items()}}
    run = check_role(role, cases, tmp_path)
    assert run.hosts["valid"].passed, run.output[-4000:]
    assert SECRET not in run.output
    problems = []
    for case, (_, expected) in CASES[role].items():
        try:
            assert_refused(run, case, expected)
        except AssertionError as problem:
            problems.append(str(problem).splitlines()[0])
    assert not problems, "\n".join(problems)


def test_runpod_endpoint_plain_http_passes_to_loopback_or_with_the_lab_switch(tmp_path):
    base = BASE["runpod_endpoint"]
    run = check_role("runpod_endpoint", {
        "loopback": {**base, "runpod_endpoint_api_url": "http://127.0.0.1:18089/v2"},
        "lab-switch": {**base, "runpod_endpoint_api_url": "http://172.30.0.1:18089/v2",
                       "runpod_endpoint_api_allow_http": True},
    }, tmp_path)
    assert run.hosts["loopback"].passed and run.hosts["lab-switch"].passed, run.output[-4000:]
    assert SECRET not in run.output


def test_traefik_guard_holds_whatever_the_tags(tmp_path, monkeypatch):
    """The traefik guard is tagged always: run with --tags traefik_install, which selects none of validate.yml, it
    still refuses DEBUG while the dynamic configuration holds a secret, before any change (check mode)."""
    real_run, commands = role_checks.subprocess.run, []

    def run_with_other_tags(argv, **kwargs):
        commands.append(["traefik_install" if arg == "traefik_validate" else arg for arg in argv])
        return real_run(commands[-1], **kwargs)

    monkeypatch.setattr(role_checks.subprocess, "run", run_with_other_tags)
    base = BASE["traefik"]
    run = check_role("traefik", {
        "valid": base,
        "debug-with-dynamic-secrets": {**base, **TRAEFIK_SECRET_HOLDER, "traefik_log_level": "DEBUG"},
        "dashboard-with-dynamic-secrets": {**base, **TRAEFIK_SECRET_HOLDER, "traefik_dashboard_enabled": True},
        # Refused only by validate.yml: passes here, so the tag really left the validation out.
        "bad-email-only-validate-refuses": {**base, "traefik_acme_email": "admin"},
    }, tmp_path)
    assert len(commands) == 1 and commands[0][commands[0].index("--tags") + 1] == "traefik_install"
    assert run.hosts["valid"].passed, run.output[-4000:]
    assert run.hosts["bad-email-only-validate-refuses"].passed, run.output[-4000:]
    assert_refused(run, "debug-with-dynamic-secrets", "traefik_log_level must not be DEBUG or TRACE (is DEBUG")
    assert_refused(run, "dashboard-with-dynamic-secrets", "traefik_dashboard_enabled must be false (is True")
    assert SECRET not in run.output
