"""The traefik role on the arm64 host: a real ACME certificate from Pebble, routing, headers, timeouts."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from traefik_scenario import DOMAIN, PEBBLE_ROOT, served_certificate, wait_for_pebble_certificate

testinfra_hosts = ["ansible://traefik-arm64"]

ROUTE_FILE = "/etc/traefik/dynamic/molecule-backend.yml"
ROUTE = f"""\
http:
  routers:
    molecule-backend:
      rule: Host(`{DOMAIN}`)
      entryPoints: [websecure]
      service: molecule-backend
  services:
    molecule-backend:
      loadBalancer:
        servers:
          - url: http://traefik-backend:8080
"""
UPLOAD_BYTES = 200 * 1024 * 1024
UPLOAD_RATE_MIB = 2.7  # the backend reads this slowly: 200 MiB take ~74 s, beyond Traefik's 60 s default
CURL = f"curl -sS --cacert {PEBBLE_ROOT}"


def test_platform_architecture(host, expected_arch):
    # An accidental amd64 run must not pass as ARM.
    assert host.system_info.arch == expected_arch


def test_pinned_release_is_installed(host, pinned_version):
    assert host.file("/usr/local/bin/traefik").linked_to == f"/opt/traefik/{pinned_version}/traefik"
    binary = host.file(f"/opt/traefik/{pinned_version}/traefik")
    assert (binary.user, binary.group, binary.mode) == ("root", "root", 0o755)
    assert re.search(rf"^Version:\s+{re.escape(pinned_version)}$", host.check_output("traefik version"), re.M)
    # The tarball and the staging directory are not left behind.
    assert host.check_output(f"ls -A /opt/traefik/{pinned_version}") == "traefik"


def test_binary_digest_recorded_at_verification_matches_and_is_root_only(host, pinned_version):
    # Compared on every run: a binary that is not the verified one is replaced before it is executed or linked.
    record = host.file(f"/opt/traefik/{pinned_version}.sha256")
    assert (record.user, record.mode) == ("root", 0o600)
    binary_digest = host.check_output(f"sha256sum /opt/traefik/{pinned_version}/traefik").split()[0]
    assert record.content_string.strip() == binary_digest


def test_service_runs_unprivileged_with_only_net_bind(host):
    assert host.service("traefik").is_enabled
    assert host.service("traefik").is_running
    pid = host.check_output("systemctl show -P MainPID traefik")
    status = host.file(f"/proc/{pid}/status").content_string
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    uid = fields["Uid"].split()[0]
    assert host.user("traefik").uid == int(uid) != 0
    # CAP_NET_BIND_SERVICE is capability 10: effective and bounding sets hold only that bit.
    assert int(fields["CapEff"], 16) == 1 << 10
    assert int(fields["CapBnd"], 16) == 1 << 10
    assert fields["NoNewPrivs"].strip() == "1"


def test_unit_is_hardened(host):
    unit = host.file("/etc/systemd/system/traefik.service").content_string
    assert unit.startswith("# Managed by selfhost.immich")
    for line in ("ProtectSystem=strict", "NoNewPrivileges=true", "StateDirectory=traefik",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"):
        assert line in unit.splitlines()
    assert "docker.sock" not in unit
    exposure = host.check_output("systemd-analyze security traefik.service --no-pager | tail -1")
    score = float(re.search(r"traefik\.service: ([0-9.]+)", exposure).group(1))
    assert score <= 2.0, exposure


def test_state_is_private_and_the_rest_read_only(host, certificate):
    state = host.file("/var/lib/traefik")
    assert (state.user, state.mode) == ("traefik", 0o700)
    acme = host.file("/var/lib/traefik/acme.json")
    assert (acme.user, acme.group, acme.mode) == ("traefik", "traefik", 0o600)
    # The running service's own mount table (ProtectSystem=strict): everything read-only but the state dir.
    pid = host.check_output("systemctl show -P MainPID traefik")
    mounts = {}
    for line in host.file(f"/proc/{pid}/mountinfo").content_string.splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")  # mount point -> per-mount options
    assert "ro" in mounts["/"]
    assert "rw" in mounts["/var/lib/traefik"]
    assert all("ro" in options for point, options in mounts.items() if point.startswith(("/etc", "/usr", "/opt")))


def test_static_configuration(host):
    config = yaml.safe_load(host.file("/etc/traefik/traefik.yml").content_string)
    web, websecure = config["entryPoints"]["web"], config["entryPoints"]["websecure"]
    assert web["address"] == ":80"
    assert web["http"]["redirections"]["entryPoint"] == {"to": "websecure", "scheme": "https", "permanent": True}
    assert websecure["address"] == ":443"
    timeouts = websecure["transport"]["respondingTimeouts"]
    assert timeouts == {"readTimeout": "600s", "idleTimeout": "600s"}  # and no writeTimeout
    assert websecure["http"]["middlewares"] == ["security-headers@file"]
    assert config["providers"]["file"] == {"directory": "/etc/traefik/dynamic", "watch": True}
    assert "api" not in config
    acme = config["certificatesResolvers"]["acme"]["acme"]
    assert acme["caServer"] == "https://traefik-pebble:14000/dir"
    assert acme["httpChallenge"] == {"entryPoint": "web"}
    assert acme["storage"] == "/var/lib/traefik/acme.json"


def test_metrics_answer_on_loopback_and_only_there(host, client, route):
    """traefik_metrics_enabled (this scenario's arm64 host): Prometheus text on 127.0.0.1:8083, nothing elsewhere."""
    client.check_output(f"{CURL} -f -o /dev/null https://{DOMAIN}/ping")  # a request, so websecure's series exist
    metrics = host.check_output("curl -sS --max-time 10 http://127.0.0.1:8083/metrics")
    assert "# TYPE traefik_config_reloads_total counter" in metrics
    assert re.search(r'traefik_entrypoint_requests_total\{code="[0-9]+",entrypoint="websecure"', metrics)
    listeners = host.check_output("ss -Hltn 'sport = :8083'").splitlines()
    assert [line.split()[3] for line in listeners] == ["127.0.0.1:8083"]
    outside = client.run("curl -sS -o /dev/null --connect-timeout 3 http://traefik-arm64:8083/metrics")
    assert outside.rc != 0, "the metrics entrypoint answered from the network"


def test_env_file_trusts_the_test_ca_and_is_root_only(host):
    env = host.file("/etc/traefik/traefik.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert "LEGO_CA_CERTIFICATES=/etc/traefik/acme-ca.pem" in env.content_string.splitlines()
    assert "CF_DNS_API_TOKEN" not in env.content_string  # HTTP-01 needs no DNS token


def test_certificate_from_pebble_validates(client, certificate):
    assert certificate["subject"] == f"CN={DOMAIN}"
    # Full chain verification with only Pebble's root as trust anchor.
    result = client.run(f"{CURL} -o /dev/null -w '%{{http_code}} %{{ssl_verify_result}}' https://{DOMAIN}/")
    assert result.rc == 0, result.stderr
    assert result.stdout.split()[1] == "0"


def test_http_redirects_permanently_to_https(client, certificate):
    out = client.check_output(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' 'http://{DOMAIN}/a/b?c=1'")
    code, location = out.split(" ", 1)
    assert code in ("301", "308")
    assert location == f"https://{DOMAIN}/a/b?c=1"


def test_tls_floor_and_strict_sni(client, certificate):
    connect = f"echo | openssl s_client -connect {DOMAIN}:443"
    assert client.run(f"{connect} -servername {DOMAIN} -tls1_2").rc == 0
    assert client.run(f"{connect} -servername {DOMAIN} -tls1_3").rc == 0
    # TLS 1.1, and TLS 1.2 without forward secrecy, are refused even when the client offers them.
    assert client.run(f"{connect} -servername {DOMAIN} -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'").rc != 0
    assert client.run(f"{connect} -servername {DOMAIN} -tls1_2 -cipher AES128-SHA256:AES256-GCM-SHA384").rc != 0
    # No SNI, no certificate: the default certificate is never shown.
    assert client.run(f"{connect} -noservername").rc != 0


@pytest.fixture(scope="module")
def route(host, client, certificate):
    """A router + service dropped into the dynamic directory, as the immich role does."""
    host.check_output(f"install -o root -g traefik -m 0640 /dev/null {ROUTE_FILE}")
    host.check_output(f"cat > {ROUTE_FILE} <<'EOF'\n{ROUTE}EOF")
    deadline = time.monotonic() + 60
    while client.run(f"{CURL} -f -o /dev/null https://{DOMAIN}/ping").rc != 0:
        assert time.monotonic() < deadline, "the dropped-in route never reached the backend"
        time.sleep(2)
    return ROUTE_FILE


def test_dropped_in_route_reaches_the_backend(client, route):
    answer = json.loads(client.check_output(f"{CURL} -f https://{DOMAIN}/hello?x=1"))
    assert answer["backend"] == "molecule"
    assert answer["path"] == "/hello?x=1"
    headers = answer["headers"]
    assert headers["Host"] == DOMAIN
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Real-Ip"] == headers["X-Forwarded-For"]


def test_security_headers(client, route):
    raw = client.check_output(f"{CURL} -f -o /dev/null -D - https://{DOMAIN}/")
    pairs = (line.split(":", 1) for line in raw.splitlines()[1:] if ":" in line)
    headers = {name.strip().lower(): value.strip() for name, value in pairs}
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"


def test_slow_200mb_upload_outlasts_the_60s_default(client, route):
    # The backend reads slowly; backpressure makes Traefik read the body just as slowly, so the upload
    # lives only if the entrypoint's readTimeout (600 s here, Traefik's default 60 s) is long enough.
    client.check_output(f"head -c {UPLOAD_BYTES} /dev/urandom > /var/tmp/upload.bin")
    expected = client.check_output("sha256sum /var/tmp/upload.bin").split()[0]
    result = client.run(
        f"{CURL} --max-time 300 -H 'Content-Type: application/octet-stream' --data-binary @/var/tmp/upload.bin"
        f" -w '\\n%{{http_code}} %{{time_total}}' 'https://{DOMAIN}/upload?rate_mib={UPLOAD_RATE_MIB}'"
    )
    client.run("rm -f /var/tmp/upload.bin")
    assert result.rc == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    code, seconds = status.split()
    assert code == "200", result.stdout
    answer = json.loads(body)
    assert answer["bytes"] == UPLOAD_BYTES
    assert answer["sha256"] == expected
    assert float(seconds) > 60, f"the upload took only {seconds}s: it does not prove the timeout fix"


# Traefik's own graceTimeOut is 10 s: a request with more than that left when the restart begins is cut unless the
# role's lifeCycle (traefik_grace_timeout, 30 s) is in effect. 25 s leave > 15 s after the test's own delays.
SLOW_SECONDS = 25
SLOW_REQUEST = f"""#!/bin/sh
{CURL} --max-time 120 -o /tmp/slow.body -w '%{{http_code}}' \\
  'https://{DOMAIN}/sleep?seconds={SLOW_SECONDS}&marker=restart' > /tmp/slow.code 2> /tmp/slow.err
echo $? > /tmp/slow.rc
"""


def _main_pid(host) -> str:
    pid = host.check_output("systemctl show -P MainPID traefik")
    assert pid.isdigit() and pid != "0", pid
    return pid


def test_request_in_flight_finishes_across_a_restart(host, client, route):
    client.check_output("rm -f /tmp/molecule-sleep-restart /tmp/slow.body /tmp/slow.code /tmp/slow.err /tmp/slow.rc")
    client.check_output(f"cat > /usr/local/bin/slow-request <<'EOF'\n{SLOW_REQUEST}EOF")
    client.check_output("chmod 0755 /usr/local/bin/slow-request")
    pid_before = _main_pid(host)
    client.check_output("systemd-run --unit=slow-request --collect /usr/local/bin/slow-request")
    # The backend marks the request's arrival: it is in flight through Traefik from now on.
    deadline = time.monotonic() + 30
    while not client.file("/tmp/molecule-sleep-restart").exists:
        assert time.monotonic() < deadline, "the slow request never reached the backend"
        time.sleep(0.5)
    time.sleep(1)
    started = time.monotonic()
    host.check_output("systemctl restart traefik")
    stopping_took = time.monotonic() - started
    deadline = time.monotonic() + 60
    while not client.file("/tmp/slow.rc").exists:
        assert time.monotonic() < deadline, "the slow request never ended"
        time.sleep(1)
    rc, code = client.file("/tmp/slow.rc").content_string.strip(), client.file("/tmp/slow.code").content_string
    assert (rc, code) == ("0", "200"), f"rc={rc} code={code} {client.file('/tmp/slow.err').content_string}"
    assert json.loads(client.file("/tmp/slow.body").content_string)["slept"] == SLOW_SECONDS
    # Really restarted, and the restart waited for the request (an immediate stop takes a second or two).
    assert _main_pid(host) != pid_before
    assert stopping_took > 10, f"the restart took only {stopping_took:.1f}s"
    client.run("rm -f /usr/local/bin/slow-request")


FRESH_FILE = "/etc/traefik/dynamic/molecule-fresh.yml"


def test_dynamic_change_applies_live_without_a_restart(host, client, route):
    pid, restarts = _main_pid(host), host.check_output("systemctl show -P NRestarts traefik")
    tag = f"fresh-{time.time_ns()}"
    fresh = f"""\
http:
  routers:
    molecule-fresh:
      rule: Host(`{DOMAIN}`) && PathPrefix(`/fresh`)
      entryPoints: [websecure]
      service: molecule-backend
      middlewares: [molecule-fresh]
  middlewares:
    molecule-fresh:
      headers:
        customRequestHeaders:
          X-Molecule-Route: {tag}
"""
    host.check_output(f"install -o root -g traefik -m 0640 /dev/null {FRESH_FILE}")
    host.check_output(f"cat > {FRESH_FILE} <<'EOF'\n{fresh}EOF")
    try:
        deadline = time.monotonic() + 60
        while True:
            answer = client.run(f"{CURL} -f https://{DOMAIN}/fresh/x")
            if answer.rc == 0 and json.loads(answer.stdout)["headers"].get("X-Molecule-Route") == tag:
                break
            assert time.monotonic() < deadline, f"the new route never answered: {answer.stdout} {answer.stderr}"
            time.sleep(1)
    finally:
        host.run(f"rm -f {FRESH_FILE}")
    assert _main_pid(host) == pid
    assert host.check_output("systemctl show -P NRestarts traefik") == restarts


def test_restart_keeps_the_certificate(host, client, standin, certificate):
    acme_before = json.loads(host.file("/var/lib/traefik/acme.json").content_string)
    host.check_output("systemctl restart traefik")
    after = wait_for_pebble_certificate(client, timeout=60)
    assert after["serial"] == certificate["serial"] == served_certificate(client)["serial"]
    acme_after = json.loads(host.file("/var/lib/traefik/acme.json").content_string)
    assert acme_after["acme"]["Certificates"] == acme_before["acme"]["Certificates"]
    # Pebble issued exactly one certificate in the whole scenario (converge, idempotence, restarts).
    pebble_log = standin("traefik-pebble").check_output("journalctl -u pebble --no-pager")
    issued = re.findall(r"Issued certificate serial ([0-9a-f]+)", pebble_log)
    assert [int(serial, 16) for serial in issued] == [int(certificate["serial"], 16)]
