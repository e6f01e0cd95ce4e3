"""The Storage Box mounted over SSHFS on the arm64 host: live, byte-exact, pinned, guarded, and self-healing.

The stand-in box (tests/lab/storagebox/) is driven from the controller with `docker` (stop/start for the
outage, host-key swap); everything the user cares about is checked on the box's side too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

testinfra_hosts = ["sshfs_storagebox-arm64"]

HOST = "sshfs_storagebox-arm64"
BOX = "sshfs_storagebox-box"
MOUNT = "/mnt/storagebox"
UNIT = "mnt-storagebox.mount"
UPLOAD = f"{MOUNT}/immich"
ALIAS = "selfhost-storagebox"
BOX_HOME = "/srv/storagebox/u100001/home"
SUB_USER, SUB_PASSWORD = "u100001-sub1", "Lab-Sub-Pass-2026"
SCENARIO_DIR = Path(__file__).resolve().parents[1]
REPO = SCENARIO_DIR.parents[1]


def docker(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], input=input, capture_output=True, text=True, check=check, timeout=300)


def on_box(script: str, check: bool = True) -> str:
    return docker("exec", BOX, "sh", "-c", script, check=check).stdout


def sha256_on_host(host, path: str) -> str:
    return host.check_output(f"sha256sum {path}").split()[0]


def sha256_on_box(path: str) -> str:
    return on_box(f"sha256sum {path}").split()[0]


def molecule_ansible_env() -> tuple[dict, str]:
    """Environment and inventory for running a playbook of this scenario from a test, as Molecule does."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PY_COLORS="0")
    ephemeral = Path(env["MOLECULE_EPHEMERAL_DIRECTORY"])
    env.setdefault("ANSIBLE_CONFIG", str(ephemeral / "ansible.cfg"))
    return env, env.get("MOLECULE_INVENTORY_FILE", str(ephemeral / "inventory"))


def recap_of(output: str, name: str) -> str:
    recap = re.search(rf"^\W*{re.escape(name)}\s+:.*$", output, re.M)
    assert recap, output[-3000:]
    return recap.group(0)


def role_checks(target: str, tasks: str, extra: dict) -> subprocess.CompletedProcess:
    """Run role_checks.yml: the role's `tasks` entry on `target` with `extra` variables (errors in stdout)."""
    env, inventory = molecule_ansible_env()
    extra = dict(extra, lab_target=target, lab_tasks=tasks)
    return subprocess.run(["ansible-playbook", "-i", inventory, str(SCENARIO_DIR / "role_checks.yml"),
                           "-e", json.dumps(extra)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env, timeout=600)


BOX_VARS = {"sshfs_storagebox_host": BOX, "sshfs_storagebox_user": "u100001", "sshfs_storagebox_trust_first_key": True}
WEBDAV_VARS = {"sshfs_storagebox_webdav_subaccount_enabled": True, "sshfs_storagebox_id": 4242,
               "sshfs_storagebox_api_token": "t0ken",
               "sshfs_storagebox_webdav_subaccount_password": "Synology-Pull-2026!"}


def test_platform_architecture(host, expected_arch):
    # An accidental amd64 run must not pass as ARM.
    assert host.system_info.arch == expected_arch


def test_mount_unit_is_active_enabled_and_sshfs(host):
    assert host.service(UNIT).is_running
    assert host.service(UNIT).is_enabled
    source = host.check_output(f"findmnt -n -o FSTYPE,SOURCE --mountpoint {MOUNT}")
    assert source.split() == ["fuse.sshfs", f"{ALIAS}:/home"]
    unit_file = host.file(f"/etc/systemd/system/{UNIT}").content_string
    options = re.search(r"^Options=(.*)$", unit_file, re.M).group(1).split(",")
    # Only sshfs options: the ssh side lives in the one Host block.
    assert options == ["reconnect", "allow_other", "default_permissions", "uid=0", "gid=0", "_netdev"]


def test_distribution_ssh_config_reads_the_drop_in_directory(host):
    # Debian 12/13 (and Ubuntu 22.04+) ship this Include; without it the alias would not resolve.
    assert re.search(r"^Include /etc/ssh/ssh_config\.d/\*\.conf$", host.file("/etc/ssh/ssh_config").content_string,
                     re.M)


def test_one_host_block_defines_the_box_for_every_ssh_client(host):
    conf = host.file("/etc/ssh/ssh_config.d/60-selfhost-storagebox.conf")
    assert conf.user == "root" and conf.mode == 0o644
    assert conf.content_string.startswith("# Managed by selfhost.immich")
    # What ssh really uses for the alias (config parsed by ssh itself).
    effective = dict(line.split(" ", 1) for line in host.check_output(f"ssh -G {ALIAS}").splitlines() if " " in line)
    assert effective["hostname"] == BOX and effective["port"] == "23" and effective["user"] == "u100001"
    assert effective["identityfile"] == "/root/.ssh/storagebox_ed25519"
    assert effective["identitiesonly"] == "yes" and effective["batchmode"] == "yes"
    assert effective["stricthostkeychecking"] == "true"
    assert effective["userknownhostsfile"] == "/root/.ssh/storagebox_known_hosts"
    assert effective["globalknownhostsfile"] == "/dev/null"
    assert effective["serveraliveinterval"] == "15" and effective["serveralivecountmax"] == "3"
    assert effective["compression"] == "no" and effective["ciphers"].startswith("aes128-gcm@openssh.com")
    # The alias alone opens the box with root's key.
    assert host.run(f"echo pwd | sftp -b - {ALIAS}").rc == 0


def test_other_local_users_cannot_reach_immichs_folder(host):
    # default_permissions: the kernel applies the modes; the folder is 0750 root:root on the mount.
    assert host.file(UPLOAD).mode == 0o750
    for attempt in (f"ls {UPLOAD}", f"cat {UPLOAD}/library/photo.jpg", f"touch {UPLOAD}/x"):
        result = host.run(f"runuser -u nobody -- {attempt}")
        assert result.rc != 0 and "Permission denied" in result.stderr, attempt


def test_retry_service_mounts_the_box_again_and_its_timer_is_on(host, wait_for, mounted):
    assert host.service("storagebox-mount-retry.timer").is_enabled
    assert host.service("storagebox-mount-retry.timer").is_running
    host.check_output("systemctl stop storagebox-mount-retry.timer")
    try:
        host.check_output(f"systemctl stop {UNIT}")
        assert not mounted()
        host.check_output("systemctl start storagebox-mount-retry.service")
        wait_for("the retried mount", mounted, 60)
        assert host.service("immich-standin.service").is_running  # bound units are started again as well
    finally:
        host.check_output("systemctl start storagebox-mount-retry.timer")


@pytest.mark.parametrize("name,size", [("photo.jpg", 4_500_000), ("thumb.webp", 40_000)])
def test_file_written_through_the_mount_is_identical_on_the_box(host, name, size):
    host.check_output(f"head -c {size} /dev/urandom > /root/{name} && cp /root/{name} {UPLOAD}/library/{name}")
    assert sha256_on_box(f"{BOX_HOME}/immich/library/{name}") == sha256_on_host(host, f"/root/{name}")


def test_immich_folders_live_only_on_the_box(host):
    listing = on_box(f"ls -A {BOX_HOME}/immich").split()
    assert "library" in listing  # sshfs_storagebox_immich_subdirs of this scenario
    # The bare mountpoint (seen under the mount) is empty and immutable: no folder, no .immich marker on local disk.
    assert host.check_output(f"storagebox-mount-guard status {MOUNT}") == "immutable"


def test_host_key_is_pinned_to_the_box(host):
    pinned = set(re.findall(r"SHA256:\S+", host.check_output("ssh-keygen -l -f /root/.ssh/storagebox_known_hosts")))
    box_keys = on_box("for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -l -f $k; done")
    offered = set(re.findall(r"SHA256:\S+", box_keys))
    assert pinned and pinned <= offered
    assert "[sshfs_storagebox-box]:23" in host.file("/root/.ssh/storagebox_known_hosts").content_string


def test_readonly_webdav_subaccount_serves_what_sshfs_wrote(host):
    # The Synology pull: the read-only sub-account's home is the box's immich/ folder.
    url = f"http://{BOX}/{SUB_USER}/library/photo.jpg"
    got = host.check_output(f"curl -fsS -u {SUB_USER}:{SUB_PASSWORD} {url} | sha256sum").split()[0]
    assert got == sha256_on_host(host, "/root/photo.jpg")
    put = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' -u {SUB_USER}:{SUB_PASSWORD} -T /root/thumb.webp "
                   f"http://{BOX}/{SUB_USER}/library/put.webp")
    assert put.stdout in ("403", "405")
    assert on_box(f"test -e {BOX_HOME}/immich/library/put.webp && echo yes || echo no").strip() == "no"


def test_bound_unit_carries_the_mount_dependency(host):
    props = host.check_output("systemctl show -p BindsTo -p After -p RequiresMountsFor immich-standin.service")
    assert f"BindsTo={UNIT}" in props
    assert f"RequiresMountsFor={MOUNT}" in props
    assert UNIT in re.search(r"^After=(.*)$", props, re.M).group(1)


def test_check_mode_on_the_converged_host_reports_no_changes(host, mounted):
    assert mounted()
    env, inventory = molecule_ansible_env()
    result = subprocess.run(["ansible-playbook", "--check", "-i", inventory, str(SCENARIO_DIR / "converge.yml")],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    recap = recap_of(result.stdout, HOST)
    assert "changed=0" in recap and "failed=0" in recap, result.stdout[-5000:]


@pytest.mark.parametrize("case,extra,message", [
    ("API feature without a token", dict(WEBDAV_VARS, sshfs_storagebox_api_token=""),
     "need sshfs_storagebox_api_token"),
    ("box ID not a number", {"sshfs_storagebox_api_enable_ssh": True, "sshfs_storagebox_api_token": "t0ken",
                             "sshfs_storagebox_id": "my-box"}, "sshfs_storagebox_id"),
    ("box ID not positive", {"sshfs_storagebox_api_enable_ssh": True, "sshfs_storagebox_api_token": "t0ken",
                             "sshfs_storagebox_id": -7}, "a positive integer"),
    ("home directory with a leading /", dict(WEBDAV_VARS, sshfs_storagebox_webdav_subaccount_home="/immich"),
     "without a leading '/'"),
    ("weak sub-account password", dict(WEBDAV_VARS, sshfs_storagebox_webdav_subaccount_password="password1234"),
     "does not meet Hetzner's policy"),
])
def test_bad_input_is_refused_with_a_clear_error(host, case, extra, message):
    # Input checks come first, so the stand-in only lends its Debian 12 facts: nothing runs on it.
    result = role_checks(BOX, "main", dict(BOX_VARS, **extra))
    assert result.returncode != 0, case
    assert message in result.stdout, result.stdout[-2500:]
    assert "Lab-Sub-Pass" not in result.stdout and "Synology-Pull-2026!" not in result.stdout


def test_unreachable_box_at_converge_time_is_a_clear_error(host):
    result = role_checks(HOST, "ssh", {"sshfs_storagebox_host": "u999999.storagebox.invalid",
                                       "sshfs_storagebox_user": "u999999"})
    assert result.returncode != 0
    assert "u999999.storagebox.invalid:23 is unreachable" in result.stdout, result.stdout[-2500:]


def test_a_host_key_fingerprint_the_box_does_not_offer_is_refused(host):
    wrong = "SHA256:" + "A" * 43
    result = role_checks(HOST, "ssh", {"sshfs_storagebox_host_key_fingerprint": wrong})
    assert result.returncode != 0
    assert f"none of which is the pinned {wrong}" in result.stdout, result.stdout[-2500:]
    # The pinned file is left as it was.
    assert host.run("grep -c sshfs_storagebox-box /root/.ssh/storagebox_known_hosts").stdout.strip() != "0"


def test_api_path_enables_ssh_and_creates_a_readonly_webdav_subaccount(host):
    sys.path.insert(0, str(REPO / "tests" / "fakes"))
    from hetzner_api import HetznerFake  # noqa: PLC0415  (the fakes are a directory of scripts)

    seed = {"storage_boxes": [{"id": 4242, "name": "immich-photos", "access_settings": {"ssh_enabled": False}}]}
    with HetznerFake(seed) as fake:
        api = dict(WEBDAV_VARS, sshfs_storagebox_api_enable_ssh=True, sshfs_storagebox_api_token=fake.token,
                   sshfs_storagebox_api_url=fake.url)
        first = role_checks(BOX, "api", api)
        assert first.returncode == 0, first.stdout[-3000:]
        # SSH on, the sub-account, and the snapshot plan the token sets (sshfs_storagebox_snapshot_plan's default).
        assert "changed=3" in recap_of(first.stdout, BOX)
        assert fake.boxes[4242]["access_settings"]["ssh_enabled"] is True
        assert fake.boxes[4242]["snapshot_plan"]["max_snapshots"] == 14
        (sub,) = [s for s in fake.subaccounts.values() if s["storage_box"] == 4242]
        assert sub["name"] == "synology-pull" and sub["home_directory"] == "immich"
        assert sub["access_settings"] == {"readonly": True, "webdav_enabled": True, "ssh_enabled": False,
                                          "samba_enabled": False, "reachable_externally": True}
        assert f"url: https://{sub['username']}.your-storagebox.de/" in first.stdout
        assert "Synology-Pull-2026!" not in first.stdout

        second = role_checks(BOX, "api", api)
        assert second.returncode == 0 and "changed=0" in recap_of(second.stdout, BOX), second.stdout[-3000:]

        unknown = role_checks(BOX, "api", dict(api, sshfs_storagebox_id=999))
        assert unknown.returncode != 0 and "No Storage Box with ID 999" in unknown.stdout, unknown.stdout[-2500:]
        assert fake.violations == [] and fake.response_problems == []


def test_unmounted_mountpoint_refuses_writes_and_stops_bound_units(host, mounted):
    host.check_output("systemctl stop storagebox-mount-retry.timer")  # it would mount the box again meanwhile
    host.check_output(f"systemctl stop {UNIT}")
    try:
        assert not mounted()
        assert not host.service("immich-standin.service").is_running  # BindsTo stopped it first
        for attempt in (f"touch {MOUNT}/.immich", f"mkdir {UPLOAD}", f"cp /root/photo.jpg {MOUNT}/"):
            result = host.run(attempt)
            assert result.rc != 0 and "Operation not permitted" in result.stderr, attempt
        assert host.check_output(f"ls -A {MOUNT}") == ""
    finally:
        host.check_output(f"systemctl start {UNIT} immich-standin.service storagebox-mount-retry.timer")
    assert mounted()
    assert sha256_on_host(host, f"{UPLOAD}/library/photo.jpg") == sha256_on_host(host, "/root/photo.jpg")


def fuse_daemon_pids(host) -> list[str]:
    """The SSHFS daemon: every process holding /dev/fuse open (the one mount of this host)."""
    script = ("for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null | grep -q ' -> /dev/fuse$' "
              "&& echo ${p#/proc/}; done; true")
    return host.check_output(script).split()


# sshfs_storagebox_oom_score_adjust of this scenario: 300, not the role's -900, which a container cannot set here
# (no CAP_SYS_RESOURCE; molecule.yml). What is proved is that the daemon and its ssh get the mount unit's value.
OOM_SCORE_ADJ = "300"


def test_sshfs_daemon_and_its_ssh_get_the_mount_units_oom_score_adj(host):
    assert f"OOMScoreAdjust={OOM_SCORE_ADJ}" in host.file(f"/etc/systemd/system/{UNIT}").content_string
    (daemon,) = fuse_daemon_pids(host)
    assert host.file(f"/proc/{daemon}/oom_score_adj").content_string.strip() == OOM_SCORE_ADJ
    # Inherited by the daemon's ssh to the box too (started before sshfs daemonized, so a child of init now).
    ssh = host.check_output(f"pgrep -f -- '-s -- {ALIAS} sftp$' || true").split()
    assert ssh, "no ssh of the SSHFS daemon"
    for pid in ssh:
        assert host.file(f"/proc/{pid}/oom_score_adj").content_string.strip() == OOM_SCORE_ADJ
    # The bound unit (Immich's stand-in) keeps the default 0: the kernel picks it before the daemon.
    standin = host.check_output("systemctl show -P MainPID immich-standin.service")
    assert host.file(f"/proc/{standin}/oom_score_adj").content_string.strip() == "0"


def host_now(host) -> str:
    return host.check_output("date +%s")


def journal_since(host, since: str, unit: str) -> str:
    return host.run(f"journalctl --no-pager -o cat --since=@{since} -u {unit}").stdout


def test_killed_sshfs_daemon_is_healed_without_a_person(host, wait_for):
    assert host.service("storagebox-mount-health.timer").is_enabled
    assert host.service("storagebox-mount-health.timer").is_running
    photo = sha256_on_host(host, "/root/photo.jpg")
    standin_before = host.check_output("systemctl show -P InvocationID immich-standin.service")
    since = host_now(host)
    daemons = " ".join(fuse_daemon_pids(host))
    # The fault, as measured in the lab: the kernel mount stays, every access fails with ENOTCONN, and systemd
    # still calls the mount active (checked at once, before the next check can heal it).
    fault = host.run(f"kill -9 {daemons}; sleep 0.3; stat -f {MOUNT} >/dev/null; "
                     f"systemctl is-active {UNIT} immich-standin.service")
    killed = time.monotonic()
    assert "Transport endpoint is not connected" in fault.stderr, fault.stderr
    assert fault.stdout.split() == ["active", "active"], fault.stdout

    def works_again() -> bool:
        read = host.run(f"timeout 5 stat {UPLOAD}/library/photo.jpg >/dev/null "
                        f"&& timeout 10 sha256sum {UPLOAD}/library/photo.jpg")
        return read.rc == 0 and read.stdout.split()[0] == photo

    wait_for("the dead mount to be healed by itself", works_again, 60, interval=1)
    healed_after = time.monotonic() - killed
    print(f"healed {healed_after:.0f}s after the SIGKILL")
    wait_for("the bound unit to run again", lambda: host.service("immich-standin.service").is_running, 30, 1)
    # It was stopped and started again: a new invocation, logged by the check.
    assert host.check_output("systemctl show -P InvocationID immich-standin.service") != standin_before
    log = journal_since(host, since, "storagebox-mount-health.service")
    heal_lines = [line for line in log.splitlines() if line.startswith(f"healing {MOUNT} - ")]
    assert len(heal_lines) == 1 and "Transport endpoint is not connected" in heal_lines[0], log
    assert "stopping immich-standin.service" in heal_lines[0], log
    assert f"healed {MOUNT}: mounted again" in log, log
    # Nothing reached the local disk meanwhile, and the new daemon has the unit's oom_score_adj again.
    assert host.check_output(f"storagebox-mount-guard status {MOUNT}") == "immutable"
    (daemon,) = fuse_daemon_pids(host)
    assert host.file(f"/proc/{daemon}/oom_score_adj").content_string.strip() == OOM_SCORE_ADJ
    assert host.service(UNIT).is_running


def test_health_check_leaves_a_working_mount_alone_and_never_runs_twice(host):
    check = f"storagebox-mount-health {MOUNT} {UNIT} immich-standin.service"
    standin = host.check_output("systemctl show -P InvocationID immich-standin.service")
    # A working mount: nothing to do, nothing said.
    quiet = host.run(check)
    assert quiet.rc == 0 and quiet.stderr == "", quiet.stderr
    # A run already holding the lock (as a heal under way would): the second one leaves it at once.
    held = host.run("rm -f /run/lock-held; flock /run/storagebox-mount-health/lock sh -c 'touch /run/lock-held; "
                    f"sleep 3' & until [ -e /run/lock-held ]; do sleep 0.1; done; {check}; wait")
    assert held.rc == 0 and "another check of /mnt/storagebox is running" in held.stderr, held.stderr
    assert host.check_output("systemctl show -P InvocationID immich-standin.service") == standin


HEALTHCHECKS = "/run/healthchecks-standin"


def test_box_down_past_the_threshold_sends_the_failure_ping_once(host, wait_for):
    # sshfs_storagebox_failure_ping_url of this scenario: a plain HTTP server on the host stands in for
    # healthchecks.io and logs each request; sshfs_storagebox_alert_after is 20 s here.
    host.check_output(f"rm -rf {HEALTHCHECKS} && mkdir -p {HEALTHCHECKS}/hc/0b1e2c3d "
                      f"&& echo OK > {HEALTHCHECKS}/hc/0b1e2c3d/fail")
    docker("exec", "-d", "-w", HEALTHCHECKS, HOST, "sh", "-c",
           f"echo $$ > {HEALTHCHECKS}.pid; exec python3 -m http.server 18099 --bind 127.0.0.1 "
           f"> {HEALTHCHECKS}.log 2>&1")
    since = host_now(host)

    def pings() -> int:
        return host.run(f"cat {HEALTHCHECKS}.log 2>/dev/null || true").stdout.count("GET /hc/0b1e2c3d/fail ")

    host.check_output("systemctl stop storagebox-mount-retry.timer")  # it would mount the box again meanwhile
    try:
        host.check_output(f"systemctl stop {UNIT}")
        down = time.monotonic()
        wait_for("the failure ping", lambda: pings() >= 1, 60, interval=1)
        after = time.monotonic() - down
        assert after >= 20, f"pinged {after:.0f}s after the box went down, before sshfs_storagebox_alert_after"
        time.sleep(12)  # at least one more check while still down: no second ping for the same outage
        assert pings() == 1
        log = journal_since(host, since, "storagebox-mount-health.service")
        assert "failure ping sent to 127.0.0.1:18099" in log, log
        assert "0b1e2c3d" not in log  # the URL's secret part is not logged
    finally:
        host.run(f"kill $(cat {HEALTHCHECKS}.pid)")
        host.check_output(f"systemctl start {UNIT} immich-standin.service storagebox-mount-retry.timer")
    wait_for("the check to see the box back", lambda: "works again after" in journal_since(
        host, since, "storagebox-mount-health.service"), 30, interval=2)


WRITER = r"""#!/bin/sh
# One ~300 KB file every second into $1; log "<n> ok <sha256>" or "<n> fail <rc> <error>" to $2.
i=0
: >"$2"
while [ ! -e /run/outage-writer.stop ]; do
  i=$((i + 1))
  head -c 300000 /dev/urandom >/run/outage-src
  sha=$(sha256sum </run/outage-src | cut -d' ' -f1)
  if timeout -s KILL 30 cp /run/outage-src "$1/f$i" 2>/run/outage-err; then
    echo "$i ok $sha" >>"$2"
  else
    echo "$i fail $? $(head -c 200 /run/outage-err | tr '\n' ' ')" >>"$2"
  fi
  sleep 1
done
echo done >>"$2"
"""


def test_box_outage_fails_writes_then_recovers_by_itself(host, wait_for):
    log = "/run/outage-writer.log"
    host.check_output(f"mkdir -p {UPLOAD}/outage && rm -f /run/outage-writer.stop")
    docker("exec", "-i", HOST, "sh", "-c", "cat > /run/outage-writer.sh", input=WRITER)
    docker("exec", "-d", HOST, "sh", "/run/outage-writer.sh", f"{UPLOAD}/outage", log)

    def entries() -> list[list[str]]:
        return [line.split() for line in host.run(f"cat {log} 2>/dev/null || true").stdout.splitlines() if line.strip()]

    def count(status: str, after: int = 0) -> int:
        return sum(1 for e in entries() if len(e) > 1 and e[1] == status and int(e[0]) > after)

    try:
        wait_for("3 writes before the outage", lambda: count("ok") >= 3, 120)
        docker("stop", "-t", "10", BOX)
        try:
            wait_for("2 failed writes during the outage", lambda: count("fail") >= 2, 180)
            # Failed writes never land on the local disk: the bare mountpoint stays empty and immutable.
            assert host.check_output(f"storagebox-mount-guard status {MOUNT}") == "immutable"
        finally:
            docker("start", BOX)
        last_fail = max(int(e[0]) for e in entries() if e[1] == "fail")
        wait_for("3 writes after the box came back", lambda: count("ok", after=last_fail) >= 3, 180)
    finally:
        host.run("touch /run/outage-writer.stop")
    wait_for("the writer to stop", lambda: entries() and entries()[-1] == ["done"], 60)

    # sshfs's reconnect, or (when two probes in a row failed) storagebox-mount-health and the retry timer.
    assert host.service(UNIT).is_running
    written = {e[0]: e[2] for e in entries() if len(e) > 2 and e[1] == "ok"}
    on_disk = dict(line.split()[::-1] for line in on_box(f"cd {BOX_HOME}/immich/outage && sha256sum f*").splitlines())
    for n, sha in written.items():
        assert on_disk.get(f"f{n}") == sha, f"file {n} written before/after the outage differs on the box"
    assert host.check_output(f"storagebox-mount-guard status {MOUNT}") == "immutable"


def test_mount_comes_back_after_a_host_restart(host, wait_for, mounted):
    docker("restart", "-t", "30", HOST)
    wait_for("systemd in the restarted host", lambda: docker("exec", HOST, "true", check=False).returncode == 0, 120)
    wait_for("the mount after the restart", mounted, 240, interval=5)
    # The bound unit starts after the mount, when boot gets to it.
    wait_for("the bound unit after the restart", lambda: host.service("immich-standin.service").is_running, 120,
             interval=5)
    assert sha256_on_host(host, f"{UPLOAD}/library/photo.jpg") == sha256_on_host(host, "/root/photo.jpg")
    host.check_output(f"cp /root/thumb.webp {UPLOAD}/library/after-restart.webp")
    assert sha256_on_box(f"{BOX_HOME}/immich/library/after-restart.webp") == sha256_on_host(host, "/root/thumb.webp")


def test_changed_box_host_key_makes_the_mount_fail(host, mounted):
    on_box("mkdir -p /root/hostkeys && cp -a /etc/ssh/ssh_host_* /root/hostkeys/ && rm /etc/ssh/ssh_host_* "
           "&& ssh-keygen -A >/dev/null && systemctl restart ssh")
    host.check_output("systemctl stop storagebox-mount-retry.timer")
    try:
        result = host.run(f"systemctl restart {UNIT}")
        assert result.rc != 0
        assert not mounted()
        # sshfs hides ssh's message; the same pinned ssh settings say why.
        probe = host.run(f"echo pwd | sftp -b - {ALIAS}")
        assert probe.rc != 0 and "Host key verification failed" in probe.stderr
        # Still nothing can be written locally.
        assert host.run(f"touch {MOUNT}/x").rc != 0
    finally:
        on_box("cp -a /root/hostkeys/ssh_host_* /etc/ssh/ && systemctl restart ssh")
        host.run(f"systemctl start {UNIT} immich-standin.service storagebox-mount-retry.timer")
    assert mounted()
