"""End to end (the Site issue's proof): the README's first command, `bash tests/lab/up.sh`, on this machine.

One fixture brings the whole lab up from nothing (`up.sh --down` first, so a lab left by an earlier run cannot
hide a failure): the stand-ins, a fresh Debian 13 server, ONE run of site.yml with inventories/lab, then
tests/lab/check.yml uses it as a user would (verified HTTPS ping, the official @immich/cli login + upload through
Traefik, one restic backup, the Synology's WebDAV pull). The tests then look at every part of the diagram from the
outside (the box's files, the server's containers, the API fakes' state through the vendors' own API paths), and a
second `up.sh` must find site.yml with nothing to change. Nothing is reused from the first run's Ansible facts:
each check reads the system itself.

Needs dockerd and the base images (tests/harness/setup.sh) and runs about 10 minutes on 2 cores, so it is its
own step of tests/run.sh, not part of the pytest step. SELFHOST_LAB_KEEP=1 leaves the lab up afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UP = REPO / "tests" / "lab" / "up.sh"
LAB_DIR = Path(os.environ.get("LAB_DIR", "/var/tmp/selfhost-immich/lab"))
SERVER, BOX, RUNPOD_EDGE, NAS = "immich-lab", "immich-lab-box", "immich-lab-runpod", "immich-lab-synology"
DOMAIN = "photos.immich-lab.test"
IMMICH_VERSION = "v3.3.1"  # inventories/lab
BOX_IMMICH = "/srv/storagebox/u100001/home/immich"  # the box's home (tests/lab/storagebox) + immich_upload_location
NAS_COPY = "/volume1/immich"
SUBACCOUNT = ("u100001-sub1", "Lab-Sub-Pass-2026")
# The literal lab-only passwords of inventories/lab; the random secrets are read from the lab's files.
LAB_PASSWORDS = ["Lab-Box-Pass-2026", "Lab-Sub-Pass-2026", "Lab-Admin-Pass-2026", "Lab-Restic-Pass-2026"]


@dataclass(repr=False)
class Run:
    rc: int
    output: str
    seconds: float
    logs: dict[str, str] = field(default_factory=dict)
    containers_before: dict[str, str] = field(default_factory=dict)  # the server's containers around the run
    containers_after: dict[str, str] = field(default_factory=dict)

    def outputs(self) -> dict[str, str]:
        """Everything the run printed or logged: where -> text."""
        return {"up.sh's output": self.output, **{f"{LAB_DIR}/logs/{k}.log": v for k, v in self.logs.items()}}

    def upload_task(self) -> str:
        """How check.yml's CLI upload ended: changed (a new photo uploaded) or ok (found on the server)."""
        match = re.search(r"TASK \[Upload it with the CLI[^\n]*\n(changed|ok): \[immich-lab\]", self.logs["check"])
        assert match, "the CLI upload task is not in check.log"
        return match.group(1)

    def recap(self, log: str, host: str) -> dict[str, int]:
        """The PLAY RECAP counters of `host` in Ansible log `log` (prepare, site, check)."""
        match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", self.logs[log], re.M)
        assert match, f"no recap line for {host} in {log}.log"
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def up(*args: str) -> Run:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(UP), *args], cwd=REPO, capture_output=True, text=True, check=False,
        env=dict(os.environ, LAB_DIR=str(LAB_DIR)),
    )
    logs = {path.stem: path.read_text() for path in (LAB_DIR / "logs").glob("*.log")} if LAB_DIR.exists() else {}
    run = Run(result.returncode, result.stdout + result.stderr, time.monotonic() - started, logs)
    print(f"up.sh {' '.join(args)}: rc {run.rc} in {run.seconds:.0f} s")
    return run


def sh(container: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True,
                          check=check)


def out(container: str, script: str) -> str:
    return sh(container, script).stdout


def tree_digests(container: str, root: str) -> dict[str, str]:
    """relative path -> sha256 of every regular file under root."""
    listing = out(container, f"cd {root} && find . -type f -print0 | xargs -0 -r sha256sum")
    return {line[66:]: line[:64] for line in listing.splitlines()}


def api(port: int, path: str, secret_file: str) -> dict:
    gateway = (LAB_DIR / "gateway").read_text().strip()
    secret = (LAB_DIR / secret_file).read_text().strip()
    request = urllib.request.Request(f"http://{gateway}:{port}{path}", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


@pytest.fixture(scope="module")
def first():
    down = up("--down")
    if down.rc != 0:
        pytest.fail(f"up.sh --down failed:\n{down.output}")
    run = up()
    if run.rc != 0:
        pytest.fail(f"up.sh failed ({run.rc}); its output ends:\n{run.output[-6000:]}")
    yield run
    if os.environ.get("SELFHOST_LAB_KEEP") != "1":
        up("--down")


def containers() -> dict[str, str]:
    """name -> id and start time of every container of the server's dockerd."""
    listing = out(SERVER, "docker inspect --format '{{.Name}} {{.Id}} {{.State.StartedAt}}' $(docker ps -aq)")
    return {line.split()[0]: line for line in listing.splitlines()}


@pytest.fixture(scope="module")
def second(first):
    before = containers()
    run = up()
    run.containers_before, run.containers_after = before, containers()
    if run.rc != 0:
        pytest.fail(f"the second up.sh failed ({run.rc}); its output ends:\n{run.output[-6000:]}")
    print(f"first up.sh {first.seconds:.0f} s, second {run.seconds:.0f} s")
    return run


def test_site_converged_the_server_and_up_says_where_immich_answers(first):
    assert first.recap("site", SERVER)["failed"] == 0
    assert first.recap("site", SERVER)["changed"] > 0  # a fresh server: site.yml did the work, not prepare.yml
    assert f"Immich answers at https://{DOMAIN}" in first.output
    assert f"--cacert {LAB_DIR}/pebble-root.pem" in first.output
    assert "immich login" in first.output


def test_https_is_verified_against_pebble_and_only_against_it(first):
    address = subprocess.run(
        ["docker", "inspect", "--format", '{{(index .NetworkSettings.Networks "immich-lab").IPAddress}}', SERVER],
        capture_output=True, text=True, check=True).stdout.strip()
    ping = ["curl", "--silent", "--show-error", "--resolve", f"{DOMAIN}:443:{address}",
            f"https://{DOMAIN}/api/server/ping"]
    verified = subprocess.run([*ping, "--cacert", str(LAB_DIR / "pebble-root.pem")], capture_output=True, text=True,
                              check=False)
    assert (verified.returncode, json.loads(verified.stdout or "{}")) == (0, {"res": "pong"}), verified.stderr
    # Without Pebble's root the certificate is not trusted (curl 60): it was issued by Pebble, not self-made.
    assert subprocess.run(ping, capture_output=True, check=False).returncode == 60


@pytest.mark.parametrize("path", ["/api/auth/admin-sign-up", "/API/auth/admin-sign-up/"])
def test_the_admin_sign_up_is_refused_through_traefik(first, path):
    """The security issue: nobody claims the instance from outside, whatever Immich itself would answer."""
    address = subprocess.run(
        ["docker", "inspect", "--format", '{{(index .NetworkSettings.Networks "immich-lab").IPAddress}}', SERVER],
        capture_output=True, text=True, check=True).stdout.strip()
    answer = subprocess.run(
        ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", "--resolve",
         f"{DOMAIN}:443:{address}", "--cacert", str(LAB_DIR / "pebble-root.pem"), "-X", "POST",
         "-H", "Content-Type: application/json", "--data", '{"email":"x@example.org","name":"x","password":"x"}',
         f"https://{DOMAIN}{path}"], capture_output=True, text=True, check=False)
    assert answer.stdout == "403", answer.stderr
    # Immich itself, on loopback, still knows the route (and refuses it: the role made the admin already).
    direct = out(SERVER, "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' "
                         "--data '{\"email\":\"x@example.org\",\"name\":\"x\",\"password\":\"x\"}' "
                         "http://127.0.0.1:2283/api/auth/admin-sign-up")
    assert direct == "400"


def test_cli_upload_lands_byte_identical_on_the_box(first):
    assert first.upload_task() == "changed"
    digest = out(SERVER, "sha256sum /root/lab-photos/lab-photo.jpg").split()[0]
    originals = tree_digests(BOX, f"{BOX_IMMICH}/upload")
    assert digest in originals.values(), originals


def test_thumbnail_is_on_the_servers_disk_not_on_the_box(first):
    assert int(out(SERVER, "find /var/lib/immich/thumbs -type f -name '*-thumbnail.webp' | wc -l")) >= 1
    assert out(BOX, f"find {BOX_IMMICH} -path '*/thumbs/*' -type f") == ""


def provisioned(url: str, token_file: str, cloudflare: bool = False) -> dict:
    """An answer of provision.yml's fakes (on this machine's loopback); Cloudflare's as api.cloudflare.com through the
    fake's CONNECT proxy, trusting the fake's CA, as provision.yml reached it."""
    through = ["--proxy", "http://127.0.0.1:18095", "--cacert", str(LAB_DIR / "cloudflare-pki" / "ca.pem")]
    token = (LAB_DIR / token_file).read_text().strip()
    answer = subprocess.run(["curl", "-sS", "--fail", *(through if cloudflare else []), "-H",
                             f"Authorization: Bearer {token}", url], capture_output=True, text=True, check=True)
    return json.loads(answer.stdout)


def test_provision_made_the_server_its_firewall_and_records_for_the_lab_host(first):
    """Issue 23: up.sh runs provision.yml before site.yml, as a user starting from a Hetzner account would; the server
    the Hetzner Cloud fake creates has the lab host's address, so site.yml converges the machine provision made."""
    recap = first.recap("provision", "localhost")
    assert recap["failed"] == 0 and recap["changed"] > 0, recap
    address = subprocess.run(
        ["docker", "inspect", "--format", '{{(index .NetworkSettings.Networks "immich-lab").IPAddress}}', SERVER],
        capture_output=True, text=True, check=True).stdout.strip()
    [server] = provisioned("http://127.0.0.1:18093/v1/servers", "hetzner-token")["servers"]
    assert (server["name"], server["server_type"]["name"], server["public_net"]["ipv4"]["ip"]) == \
        ("immich", "cax41", address)
    assert server["protection"] == {"delete": True, "rebuild": True}
    [firewall] = provisioned("http://127.0.0.1:18093/v1/firewalls", "hetzner-token")["firewalls"]
    assert sorted((rule["direction"], rule["port"]) for rule in firewall["rules"]) == [
        ("in", "22"), ("in", "443"), ("in", "80")]
    assert [r["server"]["id"] for a in firewall["applied_to"] for r in a["applied_to_resources"]] == [server["id"]]
    zones = provisioned("https://api.cloudflare.com/client/v4/zones", "cloudflare-token", cloudflare=True)["result"]
    records = provisioned(f"https://api.cloudflare.com/client/v4/zones/{zones[0]['id']}/dns_records",
                          "cloudflare-token", cloudflare=True)["result"]
    assert {(r["type"], r["name"], r["proxied"]) for r in records} == {("A", DOMAIN, False), ("AAAA", DOMAIN, False)}
    assert next(r["content"] for r in records if r["type"] == "A") == address


def test_runpod_key_is_in_no_container(first):
    key = (LAB_DIR / "runpod-key").read_text().strip()
    containers = out(SERVER, "docker ps -aq").split()
    assert len(containers) >= 3  # immich_server, redis, database
    assert key not in out(SERVER, "docker inspect " + " ".join(containers))


def test_restic_snapshot_holds_the_dump_and_the_restore_drill_matches(first):
    snapshots = json.loads(out(SERVER, "selfhost-restic snapshots --json"))
    assert len(snapshots) == 1, snapshots
    files = [json.loads(line) for line in out(SERVER, "selfhost-restic ls latest --json").splitlines()]
    paths = [f["path"] for f in files if f.get("type") == "file"]
    dumps = [p for p in paths if p.endswith("/immich-database.sql.gz")]
    assert dumps, paths
    # The drill: restore the snapshot elsewhere and compare every file with what is on the server now (nothing
    # ran in between, so each must be sha256-equal; the dump must be a whole pg_dump).
    sh(SERVER, "rm -rf /tmp/restore-drill && selfhost-restic restore latest --target /tmp/restore-drill")
    try:
        for path in paths:
            restored, live = (out(SERVER, f"sha256sum {root}{path}").split()[0] for root in ("/tmp/restore-drill", ""))
            assert restored == live, path
        tail = out(SERVER, f"gunzip --stdout /tmp/restore-drill{dumps[0]} | tail -n 5")
        assert "PostgreSQL database dump complete" in tail
    finally:
        sh(SERVER, "rm -rf /tmp/restore-drill", check=False)


def test_synology_copy_is_sha256_equal_and_the_subaccount_cannot_write(first):
    box = tree_digests(BOX, BOX_IMMICH)
    nas = tree_digests(NAS, NAS_COPY)
    assert any(path.startswith("./upload/") for path in nas)
    assert nas == box
    user, password = SUBACCOUNT
    put = sh(NAS, f"echo probe | curl -s -o /dev/null -w '%{{http_code}}' -u {user}:{password} -T - "
                  f"http://{BOX}/{user}/upload/nas-write-probe.txt", check=False)
    assert put.stdout in {"401", "403", "405"}, put.stdout
    assert sh(BOX, f"test -e {BOX_IMMICH}/upload/nas-write-probe.txt", check=False).returncode == 1


def test_hetzner_api_shows_the_box_settings_and_the_read_only_subaccount(first):
    box = api(18091, "/v1/storage_boxes/1", "hetzner-token")["storage_box"]
    assert box["access_settings"]["ssh_enabled"] is True
    assert box["snapshot_plan"] is not None
    subaccounts = api(18091, "/v1/storage_boxes/1/subaccounts", "hetzner-token")["subaccounts"]
    assert [(s["home_directory"].strip("/"), s["access_settings"]["readonly"], s["access_settings"]["webdav_enabled"])
            for s in subaccounts] == [("immich", True, True)]


def test_runpod_api_shows_the_template_and_lb_endpoint_at_the_servers_version(first):
    version = json.loads(out(SERVER, "curl -sS http://127.0.0.1:2283/api/server/version"))
    assert f"v{version['major']}.{version['minor']}.{version['patch']}" == IMMICH_VERSION
    templates = api(18092, "/v2/templates", "runpod-key")["templates"]
    endpoints = api(18092, "/v2/serverless", "runpod-key")["endpoints"]
    assert [e["type"] for e in endpoints] == ["LOAD_BALANCER"], endpoints
    assert len(templates) == 1, templates
    for image in (endpoints[0]["image"], templates[0]["image"]):
        assert f":{IMMICH_VERSION}-" in image, image  # immich-machine-learning:<version>-cuda


def secrets_of_the_lab() -> dict[str, str]:
    found = {f"password {i}": p for i, p in enumerate(LAB_PASSWORDS)}
    for name in ("runpod-key", "hetzner-token", "cloudflare-token"):
        found[name] = (LAB_DIR / name).read_text().strip()
    found["database password"] = out(SERVER, "cat /opt/immich/.db-password").strip()
    found["Immich API key"] = out(SERVER, "cat /root/.config/lab-immich-api-key").strip()
    found["the ML router's Immich API key"] = out(SERVER, "cat /etc/selfhost-immich/ml-router-immich.key").strip()
    assert all(len(value) >= 12 for value in found.values())
    return found


def assert_no_secret(texts: dict[str, str]) -> None:
    """No lab secret in any of the texts (where -> text); a finding names the secret, never shows it."""
    for name, secret in secrets_of_the_lab().items():
        for where, text in texts.items():
            if secret in text:
                pytest.fail(f"the {name} is in {where}", pytrace=False)


def test_no_secret_in_any_output_of_the_first_run(first):
    assert_no_secret(first.outputs())


def test_no_secret_in_the_servers_journal_or_in_a_file_others_can_read(first):
    """The security issue: modules log their arguments to the target's journal (file_set's contents once did), and
    a secret file must never be readable by others. The whole journal of the server and every file under the
    stack's configuration directories that others may read are searched for every lab secret."""
    journal = out(SERVER, "journalctl --no-pager -o cat")
    assert len(journal.splitlines()) > 100  # the journal of a converged server, not an empty answer
    readable = out(SERVER, "find /opt/immich /etc/traefik /etc/selfhost-immich /etc/selfhost-restic "
                           "/etc/systemd/system "
                           "-type f -perm -o=r -print0 2>/dev/null | xargs -0 -r cat")
    assert_no_secret({"the server's journal": journal, "a file others can read": readable})


# The newest ansible-core (requirements.txt) and the lowest the collection declares (meta/runtime.yml; its venv
# comes from tests/harness/setup.sh, see tests/requirements-lowest.txt).
@pytest.mark.parametrize("playbook", ["ansible-playbook", str(REPO / ".venv-lowest" / "bin" / "ansible-playbook")],
                         ids=["newest", "lowest"])
def test_check_diff_on_the_converged_server_reports_no_change(first, playbook):
    assert shutil.which(playbook), f"{playbook} is missing: tests/harness/setup.sh builds it"
    result = subprocess.run(
        [playbook, "-i", "inventories/lab", "site.yml", "--check", "--diff"], cwd=REPO, capture_output=True,
        text=True, check=False,
        env=dict(os.environ, LAB_DIR=str(LAB_DIR), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
                 ANSIBLE_PIPELINING="True", ANSIBLE_FORCE_COLOR="0"),
    )
    check = Run(result.returncode, result.stdout + result.stderr, 0, {"check-diff": result.stdout})
    assert result.returncode == 0, check.output[-6000:]
    recap = check.recap("check-diff", SERVER)
    assert (recap["changed"], recap["failed"]) == (0, 0), check.output[-6000:]
    assert_no_secret({"the output of site.yml --check --diff": check.output})


# -- the second run: the README says a re-run finds everything in place ----------------------------------------


def test_second_run_changes_nothing_and_recreates_no_container(first, second):
    recap = second.recap("site", SERVER)
    assert (recap["changed"], recap["failed"]) == (0, 0), recap
    assert second.upload_task() == "ok"  # the CLI found the photo on the server already
    assert second.containers_after == second.containers_before


def test_no_secret_in_any_output_of_the_second_run(second):
    assert_no_secret(second.outputs())


# -- Immich behind Traefik: the client's address, and brute-force protection (issue 22) ---------------------------
# Throwaway clients on the lab network (the base image the stand-ins run on; it has curl): never the controller
# (inventories/lab puts the lab network's gateway in immich_fail2ban_ignoreip) nor a stand-in other tests use.
CLIENT_IMAGE = "selfhost-immich/debian:bookworm-amd64"
SERVER_LOG = "journalctl CONTAINER_NAME=immich_server -o cat --no-pager"  # the server container's journald driver


def lab_address(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", '{{(index .NetworkSettings.Networks "immich-lab").IPAddress}}', container],
        capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def lab_client(first):
    """lab_client() -> (name, address): a new container on the lab network; removed (and unbanned) afterwards."""
    started: list[tuple[str, str]] = []

    def start() -> tuple[str, str]:
        name = f"immich-lab-client-{uuid.uuid4().hex[:8]}"
        subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "immich-lab", CLIENT_IMAGE,
                        "sleep", "900"], capture_output=True, text=True, check=True)
        started.append((name, lab_address(name)))
        return started[-1]

    yield start
    for name, address in started:
        sh(SERVER, f"fail2ban-client set immich unbanip {address}", check=False)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def curl_from(client: str, url: str, *options: str, timeout: int = 10) -> subprocess.CompletedProcess:
    """curl from `client` to `url` on the server (its name resolved to the server; the certificate is checked
    elsewhere: --insecure)."""
    server = lab_address(SERVER)
    return subprocess.run(
        ["docker", "exec", client, "curl", "--silent", "--show-error", "--insecure", "--connect-timeout", "4",
         "--max-time", str(timeout), "--resolve", f"{DOMAIN}:443:{server}", "--resolve", f"{DOMAIN}:80:{server}",
         *options, url], capture_output=True, text=True, check=False)


def double_request_line(probe: str) -> tuple[str, str]:
    """(client address, TCP peer) the double logged for the request whose path carries `probe`."""
    deadline = time.monotonic() + 15
    while True:
        lines = [line for line in out(SERVER, SERVER_LOG).splitlines() if f"probe={probe}" in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(lines) == 1, lines
    match = re.fullmatch(r"\[immich-double\] (\S+) \(peer (\S+)\) \"GET \S+ HTTP/1\.1\" 200 .*", lines[0])
    assert match, lines[0]
    return match.group(1), match.group(2)


def trusted_proxies() -> str:
    """IMMICH_TRUSTED_PROXIES as the immich role wrote it into the server's .env."""
    return out(SERVER, "sed -n 's/^IMMICH_TRUSTED_PROXIES=//p' /opt/immich/.env").strip()


def test_immich_sees_the_client_through_traefik_and_not_a_forged_header(first, lab_client):
    """Traefik's connections reach the server from the Immich network's gateway (docker-proxy): the role trusts exactly
    that address, so the double records the client container's own address, not the gateway's and not the
    X-Forwarded-For the client forged (Traefik replaces it)."""
    client, address = lab_client()
    probe = uuid.uuid4().hex
    answer = curl_from(client, f"https://{DOMAIN}/api/server/ping?probe={probe}", "-H", "X-Forwarded-For: 6.6.6.6")
    assert answer.returncode == 0 and "pong" in answer.stdout, answer.stderr
    recorded, peer = double_request_line(probe)
    print(f"through Traefik: TCP peer {peer}, client {recorded} (the client container is {address})")
    assert trusted_proxies() == "172.30.0.1"  # immich_network_gateway: one address, nothing wider
    assert peer == "172.30.0.1"  # where Traefik's requests arrive from, inside the container
    assert recorded == address


def test_a_forged_header_sent_straight_to_immich_from_its_own_network_is_ignored(first):
    """A container on the server's Docker network (untrusted: not the gateway) talks to the server directly and
    sends X-Forwarded-For: the double records the container's own address."""
    image = out(SERVER, "docker inspect --format '{{.Config.Image}}' immich_server").strip()
    probe = uuid.uuid4().hex
    script = (
        "import socket, urllib.request\n"
        f"request = urllib.request.Request('http://immich_server:2283/api/server/ping?probe={probe}',"
        " headers={'X-Forwarded-For': '6.6.6.6'})\n"
        "urllib.request.urlopen(request, timeout=10).read()\n"
        "print(socket.gethostbyname(socket.gethostname()))\n"
    )
    sender = subprocess.run(["docker", "exec", SERVER, "docker", "run", "--rm", "--network", "immich", image,
                             "python3", "-c", script], capture_output=True, text=True, check=True)
    address = sender.stdout.strip()
    recorded, peer = double_request_line(probe)
    assert recorded == peer == address, (recorded, peer, address)
    assert address.startswith("172.30.0.") and address != trusted_proxies()


def banned(address: str) -> bool:
    status = out(SERVER, "fail2ban-client status immich")
    listed = re.search(r"Banned IP list:(.*)$", status, re.M)
    assert listed, status
    return address in listed.group(1).split()


def wait_for(condition, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s: {what}"
        time.sleep(1)
    return time.monotonic() - started


def test_failed_logins_ban_the_client_at_the_firewall_and_the_ban_expires(first, lab_client):
    """The lab's jail (inventories/lab: short maxretry, findtime and bantime): a client failing to log in maxretry
    times through Traefik is banned on 443 and 80; another client still gets through; the ban ends by itself. The
    failing client names the other one in X-Forwarded-For: Traefik replaces it, so only the sender is banned."""
    attacker, attacker_address = lab_client()
    bystander, bystander_address = lab_client()
    maxretry = int(out(SERVER, "fail2ban-client get immich maxretry"))
    bantime = int(out(SERVER, "fail2ban-client get immich bantime"))
    assert (maxretry, bantime) == (3, 30)  # inventories/lab
    email = f"intruder-{uuid.uuid4().hex[:8]}@example.org"
    for _ in range(maxretry):
        answer = curl_from(attacker, f"https://{DOMAIN}/api/auth/login", "--output", "/dev/null", "--write-out",
                           "%{http_code}", "-H", "Content-Type: application/json",
                           "-H", f"X-Forwarded-For: {bystander_address}",
                           "--data", json.dumps({"email": email, "password": "not-the-password"}))
        assert answer.stdout == "401", answer.stderr
    warnings = [line for line in out(SERVER, SERVER_LOG).splitlines() if email in line]
    # Immich's own line (AuthService.login) in Nest's console format, without colour codes (NO_COLOR in .env).
    expected = re.compile(r"\[Nest\] \d+  - \d\d/\d\d/\d{4}, \d{1,2}:\d\d:\d\d\u202f[AP]M    WARN "
                          r"\[Api:AuthService~[0-9a-z]{8}\] Failed login attempt for user "
                          rf"{re.escape(email)} from ip address {re.escape(attacker_address)}")
    assert len(warnings) == maxretry and all(expected.fullmatch(line) for line in warnings), warnings
    took = wait_for(lambda: banned(attacker_address), 30, f"{attacker_address} banned")
    print(f"{attacker_address} banned {took:.0f} s after {maxretry} failed logins")
    assert not banned(bystander_address)

    for url in (f"https://{DOMAIN}/api/server/ping", f"http://{DOMAIN}/api/server/ping"):
        blocked = curl_from(attacker, url, timeout=6)
        assert blocked.returncode in (7, 28), (url, blocked.returncode, blocked.stderr)  # refused or timed out
    allowed = curl_from(bystander, f"https://{DOMAIN}/api/server/ping")
    assert allowed.returncode == 0 and "pong" in allowed.stdout, allowed.stderr

    took = wait_for(lambda: not banned(attacker_address), bantime + 30, f"the ban of {attacker_address} lifted")
    print(f"the ban lifted {took:.0f} s later (bantime {bantime} s)")
    again = curl_from(attacker, f"https://{DOMAIN}/api/server/ping")
    assert again.returncode == 0 and "pong" in again.stdout, again.stderr


def test_metrics_answer_on_the_servers_loopback_only(first, lab_client):
    """immich_metrics_enabled and traefik_metrics_enabled (inventories/lab): Prometheus text on 127.0.0.1:8081
    (Immich's API), :8082 (its workers) and :8083 (Traefik) on the server; nothing from another host."""
    assert "immich_double_up" in out(SERVER, "curl -fsS --max-time 10 http://127.0.0.1:8081/metrics")
    assert 'worker="microservices"' in out(SERVER, "curl -fsS --max-time 10 http://127.0.0.1:8082/metrics")
    assert "# TYPE traefik_config_reloads_total counter" in out(
        SERVER, "curl -fsS --max-time 10 http://127.0.0.1:8083/metrics")
    client, _ = lab_client()
    server = lab_address(SERVER)
    for port in (8081, 8082, 8083):
        answer = subprocess.run(["docker", "exec", client, "curl", "-sS", "-o", "/dev/null", "--connect-timeout", "4",
                                 f"http://{server}:{port}/metrics"], capture_output=True, text=True, check=False)
        assert answer.returncode != 0, f"port {port} answered from the lab network"


# -- The ML cost router (issue 21): the trickle on the server's CPU, backlogs on RunPod -----------------------------
# Immich's URLs are [the RunPod gateway, the CPU container]; the double pings both every 30 s (availabilityChecks)
# and prefers the healthy ones in order. The CPU container is the ML double in its local mode; the RunPod edge is
# immich-lab-runpod. Both count the predicts they served; the edge bills each worker from start to stop.
ADMIN_KEY = "$(cat /root/.config/lab-immich-api-key)"  # the admin's key check.yml made (in the server's shell)
ML_QUEUES = ("smartSearch", "faceDetection", "ocr")
LOCAL_ML = "http://immich-machine-learning:3003"


def router() -> dict:
    return json.loads(out(SERVER, "selfhost-immich-ml-router --status --json"))


def immich(method: str, path: str, body: dict | None = None) -> dict:
    data = f"-H 'Content-Type: application/json' --data '{json.dumps(body)}'" if body is not None else ""
    return json.loads(out(SERVER, f"curl -sS --fail -X {method} -H \"x-api-key: {ADMIN_KEY}\" {data} "
                                  f"http://127.0.0.1:2283{path}") or "null")


def backlog() -> int:
    queues = {q["name"]: q["statistics"] for q in immich("GET", "/api/queues")}
    return sum(queues[name][count] for name in ML_QUEUES for count in ("waiting", "active", "paused", "delayed"))


def local_ml(path: str, body: dict | None = None) -> dict:
    """The CPU stand-in's side door, from inside its container (it is reachable on the Immich network only)."""
    request = (f"urllib.request.Request('http://127.0.0.1:3003{path}', data=json.dumps({body!r}).encode(), "
               "headers={'Content-Type': 'application/json'})" if body is not None
               else f"'http://127.0.0.1:3003{path}'")
    return json.loads(out(SERVER, "docker exec immich_machine_learning python3 -c \"import json, urllib.request; "
                                  f"print(urllib.request.urlopen({request}).read().decode())\""))


def edge(path: str, body: dict | None = None) -> dict:
    data = f"-X POST --data '{json.dumps(body)}'" if body is not None else ""
    return json.loads(out(RUNPOD_EDGE, f"curl -sk {data} https://127.0.0.1:8443{path}"))


def wait(condition, what: str, timeout: float, every: float = 2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


def upload(folder: str, count: int, size: int = 30000) -> None:
    out(SERVER, f"mkdir -p {folder} && for i in $(seq 1 {count}); do head -c {size} /dev/urandom > {folder}/p$i.jpg; "
                f"done && immich upload --no-progress {folder} >/dev/null")


def ml_results() -> dict:
    return json.loads(out(SERVER, "curl -sS http://127.0.0.1:2283/_double/ml/embeddings"))


@pytest.fixture(scope="module")
def ml_router(first):
    """The router converged by site.yml, idle, both ML servers' counters at zero."""
    assert out(SERVER, "systemctl is-active selfhost-immich-ml-router.timer").strip() == "active"
    wait(lambda: router()["observed_at"] != "never", "the router's first decision", 90)
    assert router()["mode"] == "idle"
    edge("/_lab/reset", {})
    local_ml("/_lab/reset", {})
    return None


def test_the_trickle_stays_on_the_cpu_and_a_search_never_waits_for_runpod(ml_router):
    """(1) 30 trickles of 3 photos: the RunPod edge serves none of them, the CPU stand-in all; a text search is
    answered by the CPU stand-in."""
    before = ml_results()["assets"]
    for trickle in range(30):
        upload(f"/root/ml-trickle/{trickle}", 3)
        wait(lambda: backlog() == 0, f"trickle {trickle} processed", 60, every=0.5)
    assert router()["mode"] == "idle"
    results = ml_results()
    new = {asset: queues for asset, queues in results["assets"].items() if asset not in before}
    assert len(new) == 90
    assert all(set(queues) == set(ML_QUEUES) and {url.rstrip("/") for url in queues.values()} == {LOCAL_ML}
               for queues in new.values()), list(new.values())[:3]
    served = local_ml("/_lab/stats")["predicts_by_task"]
    assert served["clip.visual"] >= 90 and served["facial-recognition"] >= 90 and served["ocr"] >= 90, served
    assert edge("/_lab/stats")["predicts"] == 0  # no request reached RunPod: no cold start, nothing billed
    immich("POST", "/api/search/smart", {"query": "a dog on the beach"})
    search = [a for a in json.loads(out(SERVER, "curl -sS http://127.0.0.1:2283/_double/ml")) if "query" in a]
    assert search[-1]["url"].rstrip("/") == LOCAL_ML and search[-1]["status"] == 200, search[-1]
    assert local_ml("/_lab/stats")["predicts_by_task"]["clip.textual"] >= 1
    assert edge("/_lab/stats")["predicts"] == 0


def endpoint_idle_timeout() -> int:
    return api(18092, "/v2/serverless", "runpod-key")["endpoints"][0]["workers"]["idleTimeout"]


def test_an_import_goes_to_runpod_in_a_burst_and_no_asset_is_lost(ml_router):
    """(2) 300 photos: the mode goes to burst within 2 minutes, RunPod serves the backlog with the endpoint's idle
    timeout shortened, the mode returns to idle after the hold, the missing run redoes the jobs lost to a cold start,
    and every asset has its results."""
    # The CPU stand-in takes 3 s a predict (a CAX41's CPU time per photo, docs/ml-cost-model.md): the import is a
    # backlog for it. The edge's worker takes 25 s to start and RunPod holds a request 3 s: the first requests of the
    # burst are refused (the gateway retries, then gives up) and, while the CPU stand-in fails too, lost.
    local_ml("/_lab/config", {"predict_seconds": 3})
    edge("/_lab/config", {"cold_start": 25, "max_wait": 3, "idle_timeout": 5})
    edge("/_lab/reset", {})
    before = set(ml_results()["assets"])
    started = time.monotonic()
    upload("/root/ml-import", 300)
    wait(lambda: router()["mode"] == "burst", "the switch to burst", 120)
    switched = time.monotonic() - started
    local_ml("/_lab/config", {"predict_status": 500})  # until RunPod's worker is up: jobs fail on both URLs
    wait(lambda: edge("/_lab/stats")["worker"] == "ready", "RunPod's worker up", 90, every=1)
    local_ml("/_lab/config", {"predict_status": 0})
    wait(lambda: endpoint_idle_timeout() == 5, "the burst idle timeout on the endpoint", 30)
    wait(lambda: router()["mode"] == "idle", "the return to idle after the hold (60 s in the lab)", 600, every=5)
    wait(lambda: endpoint_idle_timeout() == 60, "the endpoint's idle timeout restored", 60)
    # The missing run (a minute after the switch), on the CPU: every asset gets all three results.
    results = wait(lambda: (r := ml_results()) and not any(r["missing"].values()) and backlog() == 0 and r,
                   "every asset with its results after the missing run", 300, every=5)
    new = {asset: queues for asset, queues in results["assets"].items() if asset not in before}
    assert len(new) == 300 and all(set(queues) == set(ML_QUEUES) for queues in new.values())
    stats = edge("/_lab/stats")
    on_runpod = sum(stats["predicts_by_task"].values())
    print(f"ML router lab: burst {switched:.0f} s after the import began; RunPod served {on_runpod} of 900 jobs, "
          f"{stats['cold_starts']} cold start(s), {stats['billed_seconds']:.0f} billed seconds, "
          f"{stats['no_worker']} refused during the cold start")
    assert switched <= 180  # the upload (under a minute) + at most two timer runs
    assert stats["no_worker"] >= 1  # the cold start refused requests: lost jobs were made
    assert on_runpod >= 600, stats  # RunPod served the backlog
    assert stats["last_authorized"] is True  # the gateway added the key (Immich sends none)
    journal = out(SERVER, "journalctl -u selfhost-immich-ml-router -o cat --no-pager")
    assert "mode idle -> burst: backlog" in journal and "mode burst -> idle: backlog 0" in journal
    assert all(f"done: missing run of {name}" in journal for name in ML_QUEUES), journal[-3000:]
    assert_no_secret({"the router's journal": journal})
    local_ml("/_lab/config", {"predict_seconds": 0})


def test_the_status_reports_the_router(ml_router):
    status = sh(SERVER, "selfhost-immich-status", check=False)
    line = next(line for line in status.stdout.splitlines() if line.startswith("router"))
    assert line.split()[1] == "ok" and " since " in line and "backlog" in line, status.stdout
