"""Faults (the reliability proof): the lab survives each fault injected in the middle of an upload.

For each fault, one test case: the official @immich/cli (inside the lab host, through Traefik over verified HTTPS,
as a user runs it) uploads a fresh set of generated photos (tests/lab/photos.py: valid JPEGs, distinct content
and EXIF dates; SELFHOST_FAULT_PHOTOS per fault, default 100); once a fifth of them are in, the fault is
injected:

    sshfs-kill        kill -9 of the SSHFS daemon on the server
    box-restart       the Storage Box stand-in restarted (docker restart)
    box-unreachable   the box cut off the lab network for 90 s, then reconnected
    traefik-dynamic   a site.yml run (--tags edge) that changes a Traefik dynamic file (the HSTS max-age); the
                      upload starts a few tasks before the file is written and must still run when it is
    traefik-static    the same with Traefik's static config (an idle timeout: the role restarts Traefik)
    postgres-kill     the Postgres container's process killed (SIGKILL from the host, as the OOM killer does;
                      `docker kill` would count as a manual stop, which no restart policy undoes)
    server-reboot     the lab host container restarted (systemd shuts down and boots: the box must be mounted
                      before Immich starts)

Then, with nobody's help: Immich must be serving again within 120 s of the fault's end (its ping through Traefik
answers, the server reads its /data on the box and an API call with the CLI's key (looked up in Postgres)
succeeds, all for 10 s in a row; the ping alone is reported too: the "s" columns); the first pass of
the CLI ends by itself; the CLI is run again, as a user would, until it reports nothing new (at most 2 re-runs).
Then: every photo's sha256 is on the box exactly once; the double's database holds exactly those assets; no file
on the box outside the database (partial or orphan), no database row without its file; nothing on the local disk
under the mountpoint (the bare directory the box is mounted over); a thumbnail for each on the local disk; and
`selfhost-immich-status` on the server exits 0 (when the immich role has installed it).
Problems that were there before the case (left by an earlier one) are not counted against it: each case compares
with the state it started from, and a lab that is not serving before a case is repaired first (said in the table).

The table (photos failed on the first pass, seconds until serving again, re-runs needed) is printed at the end
and written to /var/tmp/selfhost-immich/faults-table.md.

The lab: reused when it is up and serving (tests/run.sh keeps the one of the "lab end to end" step for this step),
else brought up with tests/lab/up.sh (about 8 minutes). It is removed at the end unless SELFHOST_LAB_KEEP=1.
SELFHOST_FAULTS="sshfs-kill postgres-kill" runs only those; SELFHOST_FAULTS_ANSIBLE_ARGS adds arguments to the
site.yml runs (e.g. "-e @vars.json" for a lab converged with extra variables).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shlex
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UP = REPO / "tests" / "lab" / "up.sh"
LAB_DIR = Path(os.environ.get("LAB_DIR", "/var/tmp/selfhost-immich/lab"))
TABLE_FILE = Path("/var/tmp/selfhost-immich/faults-table.md")
SERVER, BOX, NETWORK = "immich-lab", "immich-lab-box", "immich-lab"
DOMAIN = "photos.immich-lab.test"
BOX_IMMICH = "/srv/storagebox/u100001/home/immich"  # the box's home (tests/lab/storagebox) + the upload location
MOUNTPOINT = "/mnt/storagebox"  # sshfs_storagebox's mount on the server; Immich's /data is MOUNTPOINT/immich
THUMBS = "/var/lib/immich/thumbs"  # immich_thumbs_location: bound over /data/thumbs
PHOTOS_ON_SERVER = "/root/fault-photos"  # on the server's disk (not /tmp: a tmpfs, gone after the reboot)
COUNT = int(os.environ.get("SELFHOST_FAULT_PHOTOS", "100"))
BOUND = 120  # seconds from the fault's end until Immich must be serving again
STABLE = 10  # seconds of answers in a row that count as serving again
FIRST_PASS_LIMIT = 300  # the CLI's first pass is stopped (timeout) after this many seconds
FAULTS = ["sshfs-kill", "box-restart", "box-unreachable", "traefik-dynamic", "traefik-static", "postgres-kill",
          "server-reboot"]
SELECTED = os.environ.get("SELFHOST_FAULTS", "").split() or FAULTS
NOTHING_NEW = "All assets were already uploaded, nothing to do."
ANSIBLE_ENV = {"LAB_DIR": str(LAB_DIR), "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
               "ANSIBLE_PIPELINING": "True", "ANSIBLE_FORCE_COLOR": "0"}

_spec = importlib.util.spec_from_file_location("lab_photos", REPO / "tests" / "lab" / "photos.py")
photos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(photos)


# -- talking to the lab ---------------------------------------------------------------------------------------------


def sh(container: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell script in a lab container; never raises (a container that is down gives rc 255)."""
    try:
        return subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        return subprocess.CompletedProcess(error.cmd, 124, error.stdout or "", f"timed out after {timeout} s")


def log(message: str) -> None:
    print(f"[faults +{time.monotonic() - T0:6.1f}s] {message}", flush=True)


T0 = time.monotonic()


def server_ip() -> str:
    result = subprocess.run(
        ["docker", "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', SERVER],
        capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def ping() -> bool:
    """GET https://<domain>/api/server/ping through Traefik from this machine, verified against Pebble's root."""
    address = server_ip()
    if not address:
        return False
    result = subprocess.run(
        ["curl", "--silent", "--max-time", "5", "--cacert", str(LAB_DIR / "pebble-root.pem"), "--resolve",
         f"{DOMAIN}:443:{address}", f"https://{DOMAIN}/api/server/ping"],
        capture_output=True, text=True, check=False)
    try:
        return result.returncode == 0 and json.loads(result.stdout).get("res") == "pong"
    except ValueError:
        return False


def storage() -> bool:
    """The Immich server reads its /data on the box (what a dead or stale mount breaks, the ping does not see)."""
    return sh(SERVER, "timeout 8 docker exec immich_server cat /data/upload/.immich", timeout=15).returncode == 0


def app() -> bool:
    """An authenticated API call (the API key is looked up in Postgres) over HTTPS, from the lab host."""
    return sh(SERVER, "curl -sf --max-time 10 --cacert /usr/local/share/lab/pebble-root.pem "
                      "-H \"x-api-key: $(cat /root/.config/lab-immich-api-key)\" "
                      f"https://{DOMAIN}/api/users/me >/dev/null", timeout=20).returncode == 0


def psql(query: str) -> list[list[str]]:
    result = sh(SERVER, "docker exec immich_postgres psql --username=postgres --dbname=immich -At -F '|' -c "
                + shlex.quote(query), timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return [line.split("|") for line in result.stdout.splitlines() if line]


def assets() -> list[tuple[str, str, str]]:
    """(sha1, original path, thumbnail path) of every asset in the double's database."""
    return [(row[0], row[1], row[2]) for row in psql("SELECT checksum, original_path, thumbnail_path FROM assets")]


def count_in_db(sha1s: set[str]) -> int:
    try:
        return sum(1 for checksum, _, _ in assets() if checksum in sha1s)
    except RuntimeError:
        return -1


def box_files() -> dict[str, str]:
    """Path relative to Immich's folder on the box -> sha256 of every file there but Immich's .immich markers."""
    result = sh(BOX, f"cd {BOX_IMMICH} && find . -type f ! -name .immich -print0 | xargs -0 -r sha256sum", 120)
    assert result.returncode == 0, result.stderr
    return {line[66:].removeprefix("./"): line[:64] for line in result.stdout.splitlines()}


def local_under_mountpoint() -> set[str]:
    """Everything on the server's own disk under the mountpoint: a bind of / shows what the box's mount hides."""
    script = (f"set -e; view=$(mktemp -d /run/fault-view.XXXXXX); mount --bind / $view; "
              f"find $view{MOUNTPOINT} -mindepth 1 | sed \"s#^$view##\"; umount $view; rmdir $view")
    result = sh(SERVER, script, 60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.splitlines())


def missing_thumbnails(rows: list[tuple[str, str, str]]) -> list[str]:
    paths = [THUMBS + thumbnail.removeprefix("/data/thumbs") for _, _, thumbnail in rows]
    if not paths:
        return []
    script = "for p in " + " ".join(shlex.quote(p) for p in paths) + '; do [ -s "$p" ] || echo "$p"; done'
    result = sh(SERVER, script, 60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@dataclass
class Consistency:
    """The box against the database: files without a row (partial, orphan) and rows without their file."""

    orphans: set[str]
    lost: set[str]
    local: set[str]

    @classmethod
    def now(cls) -> Consistency:
        files = box_files()
        originals = {original.removeprefix("/data/") for _, original, _ in assets()}
        return cls(set(files) - originals, originals - set(files), local_under_mountpoint())


# -- the session: the lab, the table ----------------------------------------------------------------------------


@dataclass
class Row:
    fault: str
    photos: int = 0
    mid_upload: bool = False
    failed_first_pass: int | str = "-"
    cli_reported_failed: int | str = "-"
    ping_seconds: float | None = None
    serving_seconds: float | None = None
    reruns: int | str = "-"
    repaired_before: bool = False
    problems: list[str] = field(default_factory=list)
    duration: float = 0.0


def up(*args: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(["bash", str(UP), *args], cwd=REPO, capture_output=True, text=True, check=False,
                            env=dict(os.environ, LAB_DIR=str(LAB_DIR)))
    log(f"up.sh {' '.join(args)}: rc {result.returncode} in {time.monotonic() - started:.0f} s")
    return result


def lab_is_up() -> bool:
    """A lab brought up by up.sh (the CLI logged in) whose Traefik answers; each case repairs the rest."""
    running = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", SERVER], capture_output=True,
                             text=True, check=False).stdout.strip() == "true"
    return (running and (LAB_DIR / "pebble-root.pem").exists() and ping()
            and sh(SERVER, "test -s /root/.config/immich/auth.yml").returncode == 0)


@pytest.fixture(scope="session")
def lab():
    if lab_is_up():
        log("reusing the lab that is up (tests/run.sh: the one the end-to-end step kept)")
    else:
        log("no lab serving: tests/lab/up.sh")
        result = up()
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-6000:]
            pytest.fail(f"up.sh failed ({result.returncode}); its output ends:\n{output}")
    yield
    if os.environ.get("SELFHOST_LAB_KEEP") != "1":
        up("--down")


def render(rows: dict[str, Row]) -> list[str]:
    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.0f}"

    lines = [
        "| fault | photos | failed on the first pass (CLI said) | s until the ping answered | s until serving "
        "(ping + /data + API) | re-runs | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fault in FAULTS:
        row = rows.get(fault)
        if row is None:
            continue
        result = "pass" if not row.problems else "FAIL: " + "; ".join(row.problems)
        notes = ("" if row.mid_upload else " (upload had ended)")
        notes += " (lab repaired first)" if row.repaired_before else ""
        lines.append(f"| {fault}{notes} | {row.photos} | {row.failed_first_pass} ({row.cli_reported_failed}) | "
                     f"{seconds(row.ping_seconds)} | {seconds(row.serving_seconds)} | {row.reruns} | "
                     f"{result[:300]} |")
    return lines


class TablePrinter:
    """A plugin registered by the session: the table in pytest's terminal summary (never captured)."""

    def __init__(self, rows: dict[str, Row]) -> None:
        self.rows = rows

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.rows:
            terminalreporter.write_sep("=", f"faults injected mid-upload (also in {TABLE_FILE})")
            for line in render(self.rows):
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def table(request):
    rows: dict[str, Row] = {}
    request.config.pluginmanager.register(TablePrinter(rows), "selfhost-faults-table")
    yield rows
    TABLE_FILE.parent.mkdir(parents=True, exist_ok=True)
    TABLE_FILE.write_text("\n".join(render(rows)) + "\n")


@pytest.fixture(scope="session")
def nonce() -> str:
    """Fresh photos in every session (a kept lab already holds the last session's)."""
    return secrets.token_hex(3)


# -- recovery -------------------------------------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Samples the ping, the server's /data and an authenticated API call once a second from the fault's end."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, bool, bool]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            pinged = ping()
            self.samples.append((started, pinged, pinged and storage() and app()))
            self.halt.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def recovered_at(self, which: str) -> float | None:
        """Start of the last run of good samples, when it has lasted STABLE seconds; else None."""
        good = None
        for at, pinged, stored in self.samples:  # stored: /data and the API answer too
            ok = pinged if which == "ping" else stored
            good = (good if good is not None else at) if ok else None
        if good is None or self.samples[-1][0] - good < STABLE:
            return None
        return good

    def wait(self, since: float, cli: subprocess.Popen | None) -> None:
        """Until serving for STABLE s and the CLI's first pass ended, or the bound (+STABLE) has passed."""
        while True:
            done_cli = cli is None or cli.poll() is not None
            if done_cli and self.recovered_at("serving") is not None:
                return
            if time.monotonic() - since > BOUND + STABLE + 5 and (done_cli or time.monotonic() - since > 400):
                return
            time.sleep(1)


def wait_serving(limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if ping() and storage() and app():
            return True
        time.sleep(2)
    return False


def repair() -> None:
    """What an operator would do after a fault the lab did not heal from: remount the box, restart the stack."""
    log("repairing the lab before the case: remount the box, restart the stack")
    sh(SERVER, f"umount -l {MOUNTPOINT} 2>/dev/null; systemctl reset-failed; systemctl restart mnt-storagebox.mount; "
               "systemctl restart immich.service", timeout=300)
    wait_serving(180)


# -- the faults -----------------------------------------------------------------------------------------------------


# The Traefik faults: the site.yml run starts first; the upload starts a few tasks before the change is applied
# (the dynamic file written / the restart handler), so that it is in flight when it is.
TRAEFIK = {
    "traefik-dynamic": (lambda: {"traefik_hsts_seconds": 31536000 + int(time.time()) % 1000000},
                        r"Read the installed Traefik binary|Point the traefik command",
                        r"write the shared middlewares"),
    "traefik-static": (lambda: {"traefik_idle_timeout": f"{600 + int(time.time()) % 100000}s"},
                       r"Write the static configuration", r"RUNNING HANDLER \[selfhost\.immich\.traefik : Restart"),
}


def site_edge_during_upload(fault: str, directory: str, sha1s: set[str]) -> tuple[subprocess.Popen, bool]:
    """A site.yml run (--tags edge: the traefik role) changing a value, with the CLI uploading across the change.

    Returns the CLI's process and whether it was still uploading when the change had been applied."""
    values, start_at, applied_at = TRAEFIK[fault]
    extra = values()
    run = subprocess.Popen(
        ["ansible-playbook", "-i", "inventories/lab", "site.yml", "--tags", "edge", "-e", json.dumps(extra),
         *shlex.split(os.environ.get("SELFHOST_FAULTS_ANSIBLE_ARGS", ""))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **ANSIBLE_ENV})
    cli, mid_upload, output = None, None, []
    for line in run.stdout:
        output.append(line)
        if not line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY RECAP")):
            continue
        if cli is None and (re.search(start_at, line) or re.search(applied_at, line)):
            cli = upload(directory, FIRST_PASS_LIMIT)
            log(f"{fault}: CLI started at: {line.strip()[:100]}")
        if mid_upload is None and re.search(applied_at, line):  # the task or handler applying the change starts
            uploaded = count_in_db(sha1s)
            mid_upload = cli.poll() is None and 0 < uploaded < len(sha1s)
            log(f"{fault}: applying the change with {uploaded}/{len(sha1s)} in; the CLI is uploading: {mid_upload}")
    text = "".join(output)
    run.wait()
    recap = re.search(rf"^{SERVER}\s+:\s+(.*)$", text, re.M)
    log(f"site.yml --tags edge -e {json.dumps(extra)}: rc {run.returncode}, {recap.group(1) if recap else '?'}")
    assert run.returncode == 0, text[-5000:]
    assert recap and "changed=0" not in recap.group(1), "the run changed nothing: no fault injected"
    assert cli is not None, f"the run never reached a task matching {start_at!r} or {applied_at!r}"
    return cli, bool(mid_upload)


def inject(fault: str) -> None:
    """Inject the fault; returns when it is over (the network back, the container restarted, the run ended)."""
    if fault == "sshfs-kill":
        # The daemon the mount unit started: mount.fuse.sshfs <alias>:<path> <mountpoint> -o ...
        pids = sh(SERVER, f"pgrep -f '^[^ ]*mount.fuse.sshfs [^ ]+ {MOUNTPOINT} '").stdout.split()
        assert pids, "no SSHFS daemon on the server"
        sh(SERVER, "kill -9 " + " ".join(pids))
        log(f"kill -9 {' '.join(pids)} (sshfs)")
    elif fault == "box-restart":
        subprocess.run(["docker", "restart", BOX], check=True, capture_output=True)
    elif fault == "box-unreachable":
        subprocess.run(["docker", "network", "disconnect", NETWORK, BOX], check=True, capture_output=True)
        try:
            time.sleep(90)
        finally:
            subprocess.run(["docker", "network", "connect", NETWORK, BOX], check=True, capture_output=True)
    elif fault == "postgres-kill":
        pid = sh(SERVER, "docker inspect --format '{{.State.Pid}}' immich_postgres").stdout.strip()
        assert pid.isdigit() and pid != "0", f"no Postgres process: {pid!r}"
        sh(SERVER, f"kill -9 {pid}")
        log(f"kill -9 {pid} (immich_postgres's process, from the host)")
    elif fault == "server-reboot":
        # A reboot gives systemd time to stop the units (immich.service stops the stack): 120 s, not docker's 10.
        subprocess.run(["docker", "restart", "--time", "120", SERVER], check=True, capture_output=True)
    else:
        raise AssertionError(fault)


# -- the cases ------------------------------------------------------------------------------------------------------


def upload(directory: str, limit: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["docker", "exec", SERVER, "timeout", str(limit), "immich", "upload", "--no-progress", directory],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def failed_count(output: str) -> int:
    match = re.search(r"Failed to upload (\d+) asset", output)
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("fault", SELECTED)
def test_fault_mid_upload_heals_and_loses_nothing(fault, lab, table, nonce, tmp_path):
    started = time.monotonic()
    row = table[fault] = Row(fault, photos=COUNT)
    problems = row.problems
    if not wait_serving(30):
        row.repaired_before = True
        repair()
        if not wait_serving(60):
            problems.append("the lab was not serving before the fault, not even after a repair")
            pytest.fail(problems[-1])
    before = Consistency.now()

    # The photos: generated here, put on the server's disk with their mtimes.
    seed = f"{fault}-{nonce}"
    generated = photos.generate(tmp_path / seed, COUNT, seed)
    digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in generated}
    sha1s = {hashlib.sha1(path.read_bytes()).hexdigest() for path in generated}  # noqa: S324
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / seed, arcname=seed)
    sh(SERVER, f"mkdir -p {PHOTOS_ON_SERVER}")
    with archive.open("rb") as stream:
        subprocess.run(["docker", "exec", "-i", SERVER, "tar", "-xf", "-", "-C", PHOTOS_ON_SERVER], stdin=stream,
                       check=True, capture_output=True)
    directory = f"{PHOTOS_ON_SERVER}/{seed}"

    # The first pass, and the fault once a fifth of the photos are in (Traefik's: while the run applies it).
    if fault in TRAEFIK:
        cli, row.mid_upload = site_edge_during_upload(fault, directory, sha1s)
    else:
        cli = upload(directory, FIRST_PASS_LIMIT)
        trigger = max(1, COUNT // 5)
        while cli.poll() is None and count_in_db(sha1s) < trigger:
            time.sleep(0.3)
        row.mid_upload = cli.poll() is None
        log(f"{fault}: injecting with {count_in_db(sha1s)}/{COUNT} in (CLI running: {row.mid_upload})")
        inject(fault)
    fault_end = time.monotonic()
    monitor = Monitor()
    monitor.start()
    monitor.wait(fault_end, cli)
    monitor.halt.set()
    monitor.join()
    if cli.poll() is None:  # the bound passed and the CLI still hangs: stop the docker exec client
        cli.terminate()
    first_output = cli.communicate(timeout=60)[0]
    row.cli_reported_failed = failed_count(first_output)
    for which in ("ping", "serving"):
        at = monitor.recovered_at(which)
        setattr(row, f"{which}_seconds", None if at is None else max(0.0, at - fault_end))
    log(f"{fault}: first pass rc {cli.returncode}; ping {row.ping_seconds}, serving {row.serving_seconds}; "
        f"CLI: {first_output.strip().splitlines()[-3:] if first_output.strip() else '(nothing)'}")
    if row.serving_seconds is None or row.serving_seconds > BOUND:
        problems.append(f"not serving again within {BOUND} s by itself")
    wait_serving(30)
    in_db = count_in_db(sha1s)
    row.failed_first_pass = COUNT - in_db if in_db >= 0 else "db down"

    # The CLI again, as a user would, until it reports nothing new (at most 2 re-runs).
    reruns, settled = 0, False
    while reruns < 3 and not settled:  # a third only to tell "3" from "more"
        reruns += 1
        result = subprocess.run(["docker", "exec", SERVER, "timeout", "180", "immich", "upload", "--no-progress",
                                 directory], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        settled = NOTHING_NEW in result.stdout
        log(f"{fault}: re-run {reruns}: rc {result.returncode}, {result.stdout.strip().splitlines()[-2:]}")
    row.reruns = reruns if settled else f"> {reruns}"
    if not settled or reruns > 2:
        problems.append(f"the CLI did not report nothing new within 2 re-runs ({row.reruns})")

    # Nothing lost, nothing twice, nothing stray.
    rows = assets()
    files = box_files()
    mine = [r for r in rows if r[0] in sha1s]
    on_box = [path for path, digest in files.items() if digest in digests.values()]
    missing = sorted(name for name, digest in digests.items() if digest not in files.values())
    if missing:
        problems.append(f"{len(missing)} photos not on the box (e.g. {missing[0]})")
    if len(on_box) != len(set(files[p] for p in on_box)):
        problems.append(f"{len(on_box) - len({files[p] for p in on_box})} photos on the box more than once")
    if sorted(r[0] for r in mine) != sorted(sha1s):
        problems.append(f"database: {len(mine)} rows for {COUNT} photos ({len({r[0] for r in mine})} distinct)")
    wrong = [original for _, original, _ in mine if original.removeprefix("/data/") not in on_box]
    if wrong:
        problems.append(f"{len(wrong)} database rows point at no byte-identical file on the box")
    after = Consistency.now()
    for what, new in (("file(s) on the box outside the database", after.orphans - before.orphans),
                      ("database row(s) without their file on the box", after.lost - before.lost),
                      (f"entries on the local disk under {MOUNTPOINT}", after.local - before.local)):
        if new:
            problems.append(f"{len(new)} {what} (e.g. {sorted(new)[0]})")
    thumbless = missing_thumbnails(mine)
    if thumbless:
        problems.append(f"{len(thumbless)} thumbnails not on the local disk (e.g. {thumbless[0]})")
    # The server's own view (roles/immich: selfhost-immich-status), once the immich role installs it.
    status = sh(SERVER, "if command -v selfhost-immich-status >/dev/null; then selfhost-immich-status; "
                        "else echo absent; fi", 60)
    if status.stdout.strip() != "absent" and status.returncode != 0:
        problems.append("selfhost-immich-status reports a part down: " + " / ".join(
            line for line in status.stdout.splitlines() if " DOWN " in line))
    if not row.mid_upload:
        problems.append("the first pass had ended before the fault (not mid-upload)")
    row.duration = time.monotonic() - started
    log(f"{fault}: {row.duration:.0f} s; {'ok' if not problems else problems}")
    assert not problems, f"{fault}: " + "; ".join(problems)
