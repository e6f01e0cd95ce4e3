"""The Immich server TEST DOUBLE (tests/lab/immich_double) behaves as Immich does where a fault shows it.

The double runs as a subprocess on 127.0.0.1 with a real PostgreSQL server (a throwaway cluster of the
machine's PostgreSQL, started here) and a temporary media directory, and is driven by:
- Home Assistant's Immich client ``aioimmich`` (PyPI), a second real client of the upload path: it still
  sends ``deviceId``/``deviceAssetId``, which Immich's request validation strips (whitelist) - the upload
  must be created, stored byte-identical, listed by ``POST /search/metadata``, and a second upload of the
  same bytes is the duplicate answer with the first id and no second file;
- faults: a real ENOSPC (a tmpfs too small for the upload mounted on ``<media>/upload``), an ENOTCONN mid-file
  (what a dead SSHFS mount does; the double's test hook), and a client that disconnects mid-body. Each must
  answer 5xx where the client is still there and leave no file (temporary or final) and no database row.
The Redis the double pings at start is a one-line PONG responder: the double keeps nothing there.
IMMICH_DOUBLE_IMAGE=<tag of tests/lab/images/Dockerfile's immich-double target> runs the double from its lab
image instead (Debian's Python and python3-psycopg2; docker run on the host network).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 (requirements.txt) runs the double's database client")

REPO = Path(__file__).resolve().parents[2]
DOUBLE = REPO / "tests" / "lab" / "immich_double" / "immich_double.py"
IMAGE = os.environ.get("IMMICH_DOUBLE_IMAGE")
ADMIN = {"email": "admin@example.test", "name": "Admin", "password": "Double-Admin-Pass-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (as the postgres user when the tests run as root)."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.fail("no PostgreSQL server on this machine: install the Debian package postgresql "
                    "(tests/harness/setup.sh does)")
    base = Path(tempfile.mkdtemp(prefix="immich-double-pg-", dir="/tmp"))
    data, port = base / "data", free_port()
    data.mkdir()
    as_user: dict = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        os.chmod(base, 0o755)
        shutil.chown(data, "postgres", "postgres")
        as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
        check=True,
        capture_output=True,
        **as_user,
    )
    server = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
        + ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **as_user,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_pong():
    """Answers the double's start-up PING (the double keeps nothing in Redis)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                with contextlib.suppress(OSError):
                    connection.recv(64)
                    connection.sendall(b"+PONG\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


class Double:
    def __init__(self, url: str, media: Path, db: dict, process: subprocess.Popen, log: Path) -> None:
        self.url, self.media, self.db, self.process, self.log = url, media, db, process, log
        self.key = ""

    def rows(self) -> list[tuple]:
        with contextlib.closing(psycopg2.connect(**self.db)) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id::text, checksum, original_path FROM assets")
            return cursor.fetchall()

    def files(self) -> list[Path]:
        """Every file under <media>/upload but the mount-check marker."""
        return sorted(p for p in (self.media / "upload").rglob("*") if p.is_file() and p.name != ".immich")

    def admin_key(self) -> str:
        requests.post(f"{self.url}/api/auth/admin-sign-up", json=ADMIN, timeout=10).raise_for_status()
        login = requests.post(f"{self.url}/api/auth/login", json=ADMIN, timeout=10)
        token = login.json()["accessToken"]
        answer = requests.post(
            f"{self.url}/api/api-keys",
            json={"name": "test", "permissions": ["all"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        self.key = answer.json()["secret"]
        return self.key


@pytest.fixture
def start_double(postgres, redis_pong, tmp_path):
    """start_double(media=None, config=None, **env): the double on a fresh database and media directory (config:
    its IMMICH_CONFIG_FILE, default ML off)."""
    started: list[subprocess.Popen] = []

    def start(media: Path | None = None, config: dict | None = None, **env: str) -> Double:
        media = media or tmp_path / "media"
        media.mkdir(exist_ok=True)
        name = f"immich_{uuid.uuid4().hex[:12]}"
        admin = {"host": "127.0.0.1", "port": postgres, "user": "postgres", "dbname": "postgres"}
        with contextlib.closing(psycopg2.connect(**admin)) as connection:
            connection.autocommit = True
            connection.cursor().execute(f"CREATE DATABASE {name}")
        config_file = tmp_path / f"immich-{name}.json"
        config_file.write_text(json.dumps(config or {"machineLearning": {"enabled": False}}))
        port = free_port()
        settings = {
            "IMMICH_MEDIA_LOCATION": str(media),
            "IMMICH_CONFIG_FILE": str(config_file),
            "IMMICH_HOST": "127.0.0.1",
            "IMMICH_PORT": str(port),
            "DB_HOSTNAME": "127.0.0.1",
            "DB_PORT": str(postgres),
            "DB_USERNAME": "postgres",
            "DB_DATABASE_NAME": name,
            "REDIS_HOSTNAME": "127.0.0.1",
            "REDIS_PORT": str(redis_pong),
            **env,
        }
        log = tmp_path / f"double-{port}.log"
        command = [sys.executable, str(DOUBLE)]
        if IMAGE:
            environment = [f"-e{key}={value}" for key, value in settings.items()]
            command = ["docker", "run", "--rm", "--network=host", "-v", f"{tmp_path}:{tmp_path}", *environment, IMAGE]
        with log.open("wb") as out:
            process = subprocess.Popen(command, env={**os.environ, **settings}, stdout=out, stderr=out)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/api/server/ping", timeout=2).json() == {"res": "pong"}:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        return Double(url, media, {**admin, "dbname": name}, process, log)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def multipart(fields: dict[str, str], filename: str, data: bytes, boundary: str = "double-test-boundary") -> bytes:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    )
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="assetData"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return body + data + f"\r\n--{boundary}--\r\n".encode()


DATES = {"fileCreatedAt": "2026-11-30T10:00:00.000Z", "fileModifiedAt": "2026-11-30T10:00:00.000Z"}


def upload(double: Double, fields: dict[str, str], filename: str, data: bytes, **headers: str) -> requests.Response:
    return requests.post(
        f"{double.url}/api/assets",
        data=multipart(fields, filename, data),
        headers={
            "x-api-key": double.key,
            "Content-Type": "multipart/form-data; boundary=double-test-boundary",
            **headers,
        },
        timeout=30,
    )


def test_aioimmich_upload_is_stored_byte_identical_listed_and_a_second_one_is_the_duplicate(start_double, tmp_path):
    aiohttp = pytest.importorskip("aiohttp")
    aioimmich = pytest.importorskip("aioimmich", reason="aioimmich (requirements.txt): Home Assistant's client")
    double = start_double()
    key = double.admin_key()
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(os.urandom(300 * 1024))  # several chunks of aioimmich's 64 KiB file sender

    async def client():
        async with aiohttp.ClientSession() as session:
            immich = aioimmich.Immich(session, key, "127.0.0.1", int(double.url.rsplit(":", 1)[1]), use_ssl=False)
            await immich.async_setup()
            first = await immich.assets.async_upload_asset(str(photo))
            second = await immich.assets.async_upload_asset(str(photo))
            listed = await immich.search.async_get_all()
            return first, second, listed

    first, second, listed = asyncio.run(client())
    assert first.status == "created"
    assert (second.status, second.asset_id) == ("duplicate", first.asset_id)
    assert [asset.asset_id for asset in listed] == [first.asset_id]
    asset = listed[0]
    assert asset.original_file_name == "IMG_0001.jpg"
    assert asset.checksum == base64.b64encode(hashlib.sha1(photo.read_bytes()).digest()).decode()  # noqa: S324
    assert Path(asset.original_path).read_bytes() == photo.read_bytes()
    assert double.files() == [Path(asset.original_path)]  # one file: no second copy, no temporary left
    assert len(double.rows()) == 1


def test_config_file_with_an_unknown_key_stops_the_start_and_known_keys_pass(tmp_path, monkeypatch):
    """The keys are the role's (roles/immich/files/config_keys.json): leaves take any value, sections recurse."""
    config = tmp_path / "immich.yaml"
    config.write_text("machineLearning:\n  clip: {modelname: x}\n  urls: [http://ml:3003]\nstoragetemplate: {}\n")
    command = [sys.executable, str(DOUBLE)]
    if IMAGE:
        command = ["docker", "run", "--rm", "-v", f"{tmp_path}:{tmp_path}", f"-eIMMICH_CONFIG_FILE={config}", IMAGE]
    env = {**os.environ, "IMMICH_CONFIG_FILE": str(config)}
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode == 1
    assert (
        f"ImmichStartupError: Invalid value(s) in config file {config}: unknown key(s) "
        "machineLearning.clip.modelname, storagetemplate"
    ) in started.stdout

    spec = importlib.util.spec_from_file_location("immich_double", DOUBLE)
    double = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(double)
    known = {
        "machineLearning": {"clip": {"modelName": "x"}, "urls": ["http://ml:3003"], "enabled": True},
        "notifications": {"smtp": {"transport": {"port": 587}}},
        "ffmpeg": {"acceptedVideoCodecs": ["h264"]},
    }
    (tmp_path / "immich.json").write_text(json.dumps(known))
    monkeypatch.setenv("IMMICH_CONFIG_FILE", str(tmp_path / "immich.json"))
    assert double.load_config() == known


def test_unknown_fields_are_ignored_and_missing_required_fields_refused(start_double):
    double = start_double()
    double.admin_key()
    data = os.urandom(4096)
    # Immich's ValidationPipe strips what its DTO does not declare (whitelist, no forbidNonWhitelisted).
    extra = {**DATES, "deviceId": "old-client", "deviceAssetId": "old-client-1", "somethingNew": "x"}
    created = upload(double, extra, "a.jpg", data)
    assert created.status_code == 201, created.text
    headers = {"x-api-key": double.key}
    key = requests.post(
        f"{double.url}/api/api-keys",
        json={"name": "k", "permissions": ["all"], "unknownField": True},
        headers=headers,
        timeout=10,
    )
    assert key.status_code == 201, key.text
    # The header check answers a known checksum before reading the body (AssetUploadInterceptor).
    checksum = hashlib.sha1(data).hexdigest()  # noqa: S324
    again = upload(double, DATES, "a.jpg", data, **{"x-immich-checksum": checksum})
    assert (again.status_code, again.json()) == (200, {"id": created.json()["id"], "status": "duplicate"})

    # Required fields are still required: 400, and the file that came with the form is not kept.
    for fields in ({"fileModifiedAt": DATES["fileModifiedAt"]}, {**DATES, "fileCreatedAt": "yesterday"}):
        refused = upload(double, fields, "b.jpg", os.urandom(4096))
        assert refused.status_code == 400, refused.text
    assert upload(double, DATES, "notes.txt", b"text").status_code == 400  # canUploadFile
    login = requests.post(f"{double.url}/api/auth/login", json={"email": ADMIN["email"]}, timeout=10)
    assert login.status_code == 400
    check = requests.post(f"{double.url}/api/assets/bulk-upload-check", json={}, headers=headers, timeout=10)
    assert check.status_code == 400
    no_permissions = requests.post(f"{double.url}/api/api-keys", json={"name": "k"}, headers=headers, timeout=10)
    assert no_permissions.status_code == 400
    assert len(double.files()) == 1 and len(double.rows()) == 1


def assert_nothing_left(double: Double) -> None:
    assert double.files() == []
    assert double.rows() == []


@pytest.fixture
def small_upload_disk(tmp_path):
    """<media>/upload on a 256 KiB tmpfs (torn down after start_double's processes, which it precedes)."""
    media = tmp_path / "media"
    (media / "upload").mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "immich-double-test", str(media / "upload")],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    yield media
    subprocess.run(["umount", str(media / "upload")], check=True)


def test_enospc_mid_write_answers_500_and_leaves_no_file_and_no_row(small_upload_disk, start_double):
    double = start_double(small_upload_disk)
    double.admin_key()
    answer = upload(double, DATES, "big.jpg", os.urandom(1024 * 1024))  # 1 MiB into 256 KiB
    assert answer.status_code == 500, answer.text
    assert_nothing_left(double)
    assert "No space left on device" in double.log.read_text()
    # The space the failed write took is free again: a photo that fits is taken.
    small = upload(double, DATES, "small.jpg", os.urandom(64 * 1024))
    assert small.status_code == 201, small.text
    assert len(double.files()) == 1 and len(double.rows()) == 1


@pytest.mark.parametrize("where", ["65536", "rename"], ids=["mid-file", "at-the-rename"])
def test_dead_mount_enotconn_answers_500_and_leaves_no_file_and_no_row(start_double, where):
    """ENOTCONN (a dead SSHFS mount) in the middle of the file, or when the file is renamed into place: the row
    is only written after the rename, so neither leaves one."""
    double = start_double(IMMICH_DOUBLE_TEST_FAIL_UPLOAD_WRITE=f"ENOTCONN:{where}")
    double.admin_key()
    answer = upload(double, DATES, "photo.jpg", os.urandom(256 * 1024))
    assert answer.status_code == 500, answer.text
    assert_nothing_left(double)
    assert "Transport endpoint is not connected" in double.log.read_text()


def test_client_disconnecting_mid_body_leaves_no_file_and_no_row(start_double):
    double = start_double()
    double.admin_key()
    body = multipart(DATES, "photo.jpg", os.urandom(1024 * 1024))
    head = (
        "POST /api/assets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"x-api-key: {double.key}\r\nContent-Type: multipart/form-data; boundary=double-test-boundary\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    host, port = double.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body[: len(body) // 2])
        # The double streams the file to a temporary file as it arrives: wait until that exists.
        deadline = time.monotonic() + 10
        while not double.files():
            assert time.monotonic() < deadline, "no temporary file while the body was arriving"
            time.sleep(0.05)
        assert all(path.name.endswith(".tmp") for path in double.files())
    deadline = time.monotonic() + 10
    while double.files() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_nothing_left(double)
    assert requests.get(f"{double.url}/api/server/ping", timeout=5).json() == {"res": "pong"}


def test_logout_ends_the_session_and_keeps_the_api_key(start_double):
    """The immich role logs in to check that the instance is its own, then logs out (no session piles up)."""
    double = start_double()
    key = double.admin_key()
    token = requests.post(f"{double.url}/api/auth/login", json=ADMIN, timeout=10).json()["accessToken"]
    session = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{double.url}/api/users/me", headers=session, timeout=10).status_code == 200
    answer = requests.post(f"{double.url}/api/auth/logout", headers=session, timeout=10)
    assert (answer.status_code, answer.json()["successful"]) == (200, True)
    assert requests.get(f"{double.url}/api/users/me", headers=session, timeout=10).status_code == 401
    assert requests.get(f"{double.url}/api/users/me", headers={"x-api-key": key}, timeout=10).status_code == 200


def test_an_api_key_deleted_stops_working_and_a_second_delete_is_refused(start_double):
    """The immich role replaces the ML router's key this way: DELETE /api/api-keys/{id} (204), then 400."""
    double = start_double()
    double.admin_key()
    token = requests.post(f"{double.url}/api/auth/login", json=ADMIN, timeout=10).json()["accessToken"]
    session = {"Authorization": f"Bearer {token}"}
    made = requests.post(f"{double.url}/api/api-keys", json={"name": "router", "permissions": ["queue.read"]},
                         headers=session, timeout=10).json()
    router_key = {"x-api-key": made["secret"]}
    assert requests.get(f"{double.url}/api/queues", headers=router_key, timeout=10).status_code == 200
    url = f"{double.url}/api/api-keys/{made['apiKey']['id']}"
    assert requests.delete(url, headers=session, timeout=10).status_code == 204
    assert requests.get(f"{double.url}/api/queues", headers=router_key, timeout=10).status_code == 401
    assert requests.delete(url, headers=session, timeout=10).status_code == 400
    assert requests.delete(f"{double.url}/api/api-keys/not-a-uuid", headers=session, timeout=10).status_code == 400
    assert requests.delete(url, timeout=10).status_code == 401
    # The admin's own key is untouched.
    assert requests.get(f"{double.url}/api/users/me", headers={"x-api-key": double.key}, timeout=10).status_code == 200


def test_a_dropped_database_connection_fails_one_request_and_the_next_connects_again(start_double):
    """The fault step's postgres-kill: Immich's pool drops a dead connection and connects again. The double kept its
    one connection forever and answered every later request with an error until it was restarted."""
    double = start_double()
    key = double.admin_key()
    headers = {"x-api-key": key}
    assert requests.get(f"{double.url}/api/users/me", headers=headers, timeout=10).status_code == 200
    with contextlib.closing(psycopg2.connect(**double.db)) as connection, connection.cursor() as cursor:
        connection.autocommit = True
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    first = requests.get(f"{double.url}/api/users/me", headers=headers, timeout=10)
    assert first.status_code == 500, first.text  # the statement in flight on the dead connection, not retried
    again = requests.get(f"{double.url}/api/users/me", headers=headers, timeout=10)
    assert again.status_code == 200, again.text
    assert requests.get(f"{double.url}/api/server/ping", timeout=10).json() == {"res": "pong"}


def test_a_temporary_upload_file_left_by_a_stopped_run_is_removed_at_the_next_start(start_double, tmp_path):
    """The healer restarts the stack while a removal waits for the dead mount: the next start removes the double's
    own temporaries, and nothing else."""
    first = start_double()
    first.process.terminate()
    first.process.wait(timeout=30)
    folder = first.media / "upload" / str(uuid.uuid4()) / "ab" / "cd"
    folder.mkdir(parents=True)
    left = folder / f".{uuid.uuid4()}.assetData.tmp"
    left.write_bytes(b"half an upload")
    other = folder / ".not-the-doubles.tmp"
    other.write_bytes(b"someone else's")
    start_double(media=first.media)
    deadline = time.monotonic() + 15
    while left.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left.exists()
    assert other.exists()


# -- Client addresses (express `trust proxy` with Immich's list) and the failed-login line --------------------------


def load_double():
    spec = importlib.util.spec_from_file_location("immich_double", DOUBLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GATEWAY = "172.30.0.1"  # the immich role's IMMICH_TRUSTED_PROXIES: the Docker network's gateway, nothing wider


@pytest.mark.parametrize(
    ("setting", "peer", "forwarded_for", "client"),
    [
        # Traefik (through docker-proxy: the gateway) forwards the client it saw.
        (GATEWAY, GATEWAY, "203.0.113.5", "203.0.113.5"),
        # ... and a forged entry the client sent is further left: the first untrusted from the right wins.
        (GATEWAY, GATEWAY, "6.6.6.6, 203.0.113.5", "203.0.113.5"),
        (GATEWAY, "::ffff:172.30.0.1", "203.0.113.5", "203.0.113.5"),  # an IPv4-mapped peer (Node on ::)
        # An untrusted peer (another container on the network): its own header is ignored.
        (GATEWAY, "172.30.0.7", "6.6.6.6", "172.30.0.7"),
        # Loopback is always trusted; when every address is trusted the furthest is the client.
        (GATEWAY, "127.0.0.1", "172.30.0.1", "172.30.0.1"),
        (GATEWAY, "::1", "203.0.113.5", "203.0.113.5"),
        (GATEWAY, GATEWAY, "", GATEWAY),
        # Not an address: untrusted, so it is the client (what express answers too).
        (GATEWAY, GATEWAY, "unknown", "unknown"),
        # The `forwarded` package: commas split, spaces trimmed, empty entries dropped; two headers are one list.
        (GATEWAY, GATEWAY, " 6.6.6.6 ,, 203.0.113.5 , ", "203.0.113.5"),
        ("172.30.0.0/24, 10.9.0.1", "172.30.0.7", "10.9.0.1, 6.6.6.6", "6.6.6.6"),
        # Immich's default (unset: linklocal, uniquelocal) trusts every private address: the forged one wins.
        (None, "172.30.0.7", "6.6.6.6", "6.6.6.6"),
        (None, "192.168.1.20", "fe80::1, 6.6.6.6", "6.6.6.6"),
        (None, "8.8.8.8", "6.6.6.6", "8.8.8.8"),
    ],
)
def test_client_address_is_the_first_untrusted_from_the_socket_outwards(setting, peer, forwarded_for, client):
    double = load_double()
    assert double.client_address(peer, forwarded_for, double.trusted_proxies(setting)) == client


@pytest.mark.parametrize("setting", ["", "linklocal", "172.30.0.1/33", "172.30.0.01", "172.30.0.1, photos.example"])
def test_trusted_proxies_that_are_no_ip_or_range_stop_the_start(setting):
    """As Immich's EnvDto (IsIPRange, requireCIDR false, each entry): no preset names or host names in the env."""
    double = load_double()
    with pytest.raises(double.StartupError, match="Invalid environment variables: IMMICH_TRUSTED_PROXIES="):
        double.trusted_proxies(setting)


def test_nest_line_is_coloured_unless_no_color(monkeypatch):
    double = load_double()
    moment = double.datetime(2026, 12, 5, 16, 5, 9)
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = double.nest_line("WARN", "Api:AuthService~abc", "text", moment)
    assert coloured == (f"\x1b[33m[Nest] {os.getpid()}  - \x1b[39m12/05/2026, 4:05:09\u202fPM \x1b[33m   WARN\x1b[39m "
                        "\x1b[33m[Api:AuthService~abc]\x1b[39m \x1b[33mtext\x1b[39m")
    monkeypatch.setenv("NO_COLOR", "true")
    assert double.nest_line("WARN", "Api:AuthService~abc", "text", moment) == (
        f"[Nest] {os.getpid()}  - 12/05/2026, 4:05:09\u202fPM    WARN [Api:AuthService~abc] text")


def local_ipv4() -> str | None:
    """A non-loopback IPv4 address of this machine, to connect to the double from (an untrusted peer)."""
    listing = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        address = ipaddress.ip_address(line.split()[3].split("/")[0])
        if not address.is_loopback:
            return str(address)
    return None


def failed_login(url: str, source: str, **headers: str) -> tuple[int, dict]:
    """POST /api/auth/login with a wrong password from the local address `source`, to the double listening on that
    same address (to 127.0.0.1 from another address, Docker's masquerading rules may rewrite the source)."""
    port = int(url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection(source, port, timeout=10, source_address=(source, 0))
    body = json.dumps({"email": "Nobody@Example.test", "password": "wrong"})
    connection.request("POST", "/api/auth/login", body, {"Content-Type": "application/json", **headers})
    answer = connection.getresponse()
    result = answer.status, json.loads(answer.read())
    connection.close()
    return result


def log_lines(double: Double, needle: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in double.log.read_text(encoding="utf-8").splitlines() if needle in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_failed_login_logs_immichs_line_with_the_client_address_express_would_compute(start_double):
    """The role's IMMICH_TRUSTED_PROXIES (one address) and NO_COLOR: a loopback peer is trusted, so its
    X-Forwarded-For names the client; a peer that is not trusted (this machine's non-loopback address) is the client
    whatever header it sends. The line is Immich's AuthService warning, which the fail2ban filter reads."""
    other = local_ipv4()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    double = start_double(IMMICH_HOST="0.0.0.0", IMMICH_TRUSTED_PROXIES=GATEWAY, NO_COLOR="true")  # noqa: S104
    double.admin_key()
    line = re.compile(
        r"\[Nest\] \d+  - \d\d/\d\d/\d{4}, \d{1,2}:\d\d:\d\d\u202f[AP]M    WARN \[Api:AuthService~(\S+)\] "
        r"Failed login attempt for user nobody@example\.test from ip address (\S+)")

    forged = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9", "x-immich-cid": "cid-one"}
    status, answer = failed_login(double.url, "127.0.0.1", **forged)
    assert (status, answer["message"]) == (401, "Incorrect email or password")
    found = [line.fullmatch(text) for text in log_lines(double, "~cid-one]")]
    assert [match.groups() for match in found if match] == [("cid-one", "203.0.113.9")], found

    status, _ = failed_login(double.url, other, **{"X-Forwarded-For": "203.0.113.9", "x-immich-cid": "cid-two"})
    assert status == 401
    found = [line.fullmatch(text) for text in log_lines(double, "~cid-two]")]
    assert [match.groups() for match in found if match] == [("cid-two", other)], double.log.read_text()
    # Every request is logged with its client address and the socket's peer.
    assert any(f"{other} (peer {other}) \"POST /api/auth/login HTTP/1.1\" 401" in text
               for text in log_lines(double, "POST /api/auth/login")), double.log.read_text()

    # A correct login logs no warning; a generated correlation id is 8 base-36 characters.
    assert requests.post(f"{double.url}/api/auth/login", json=ADMIN, timeout=10).status_code == 201
    failed_login(double.url, "127.0.0.1")

    def three_lines() -> list[str] | None:  # the third line may reach the log after the answer (docker's pipe)
        ids = [match.group(1) for text in log_lines(double, "Failed login attempt") if (match := line.fullmatch(text))]
        return ids if len(ids) >= 3 else None

    ids = wait_until(three_lines, "the third failed-login line", timeout=10)
    assert len(ids) == 3 and re.fullmatch(r"[0-9a-z]{8}", ids[-1]), ids


# -- Machine learning: availability checks, URL order, the ML job queues (Immich v3) ---------------------------------
# The ML servers are tests/lab/ml_worker in its --local mode (Immich's CPU container stand-in), in this process;
# its /_lab faults (ping_status, predict_status) make one unhealthy or failing.

WORKER = REPO / "tests" / "lab" / "ml_worker" / "ml_worker.py"
ML_QUEUES = ("smartSearch", "faceDetection", "ocr")


def load_worker():
    spec = importlib.util.spec_from_file_location("ml_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class MlServer:
    def __init__(self, server) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/"

    def fault(self, **settings: int) -> None:
        self.server.edge.configure(**settings)

    def stats(self) -> dict:
        return self.server.edge.snapshot()


@pytest.fixture
def ml_server():
    """ml_server(**faults): an Immich ML stand-in (ml_worker.py --local) on a free port."""
    worker = load_worker()
    servers = []

    def start(**faults: int) -> MlServer:
        args = worker.argparse.Namespace(host="127.0.0.1", port=0, local=True, cold_start=0.0, max_wait=120.0,
                                         idle_timeout=0.0, expect_host=None, quiet=True, tls_cert=None, tls_key=None)
        server = worker.make_server(args, "")
        server.edge.configure(**faults)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return MlServer(server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def ml_config(*servers: MlServer, checks: bool = True, interval_ms: int = 60000, **features: bool) -> dict:
    ml = {"enabled": True, "urls": [server.url for server in servers],
          "availabilityChecks": {"enabled": checks, "timeout": 2000, "interval": interval_ms}}
    for feature, enabled in features.items():
        ml[feature] = {"enabled": enabled}
    return {"machineLearning": ml}


def api(double: Double, method: str, path: str, body: dict | None = None, key: str | None = None):
    return requests.request(method, f"{double.url}{path}", json=body, timeout=30,
                            headers={"x-api-key": key if key is not None else double.key})


def queues(double: Double) -> dict[str, dict]:
    answer = api(double, "GET", "/api/queues")
    assert answer.status_code == 200, answer.text
    return {queue["name"]: queue for queue in answer.json()}


def wait_until(condition, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_for_jobs(double: Double, done: dict[str, int]) -> dict[str, dict]:
    """Until each named queue has nothing waiting or active and `done` jobs completed + failed."""
    def settled():
        found = queues(double)
        for name, count in done.items():
            stats = found[name]["statistics"]
            if stats["waiting"] or stats["active"] or stats["completed"] + stats["failed"] != count:
                return None
        return found
    return wait_until(settled, f"jobs {done}")


def wait_for_health(double: Double, expected: list[bool]) -> None:
    def matches():
        state = requests.get(f"{double.url}/_double/ml/health", timeout=10).json()
        return [url["healthy"] for url in state["urls"]] == expected
    wait_until(matches, f"health {expected}")


def upload_photos(double: Double, count: int) -> list[str]:
    ids = []
    for number in range(count):
        answer = upload(double, DATES, f"photo-{number}.jpg", os.urandom(2048))
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def embeddings(double: Double) -> dict:
    return requests.get(f"{double.url}/_double/ml/embeddings", timeout=10).json()


def smart_search(double: Double, query: str) -> requests.Response:
    return api(double, "POST", "/api/search/smart", {"query": query})


@pytest.mark.parametrize(("gateway_ping", "health", "served_by"), [
    (503, [False, True], "cpu"),  # the router's idle mode: Immich uses the CPU container (second URL)
    (0, [True, True], "gateway"),  # its burst mode: Immich sends everything to RunPod (first URL)
], ids=["idle-cpu", "burst-gateway"])
def test_the_gateways_ping_decides_which_url_serves_every_predict_and_the_search(
        start_double, ml_server, gateway_ping, health, served_by):
    servers = {"gateway": ml_server(ping_status=gateway_ping), "cpu": ml_server()}
    server, other = servers[served_by], servers["cpu" if served_by == "gateway" else "gateway"]
    double = start_double(config=ml_config(servers["gateway"], servers["cpu"]))
    double.admin_key()
    wait_for_health(double, health)
    ids = upload_photos(double, 2)
    wait_for_jobs(double, dict.fromkeys(ML_QUEUES, 2))
    assert search_answer_is_empty(smart_search(double, "a dog on a beach"))
    assert other.stats()["predicts"] == 0 and other.stats()["pings"] >= 1
    assert server.stats()["predicts_by_task"] == {"clip.visual": 2, "facial-recognition": 2, "ocr": 2,
                                                  "clip.textual": 1}
    found = embeddings(double)
    assert found["assets"] == {asset: dict.fromkeys(ML_QUEUES, server.url) for asset in ids}
    assert found["missing"] == dict.fromkeys(ML_QUEUES, 0)
    # The e2e test's contract: an attempt names the URL, its status and whether the answer had the embedding.
    attempts = requests.get(f"{double.url}/_double/ml", timeout=10).json()
    assert any(a["url"] == server.url and a["status"] == 200 and a["embedding"] for a in attempts), attempts


def search_answer_is_empty(answer: requests.Response) -> bool:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["assets"] == {"total": 0, "count": 0, "items": [], "facets": [], "nextPage": None, "nextCursor": None}
    assert body["albums"] == {"total": 0, "count": 0, "items": [], "facets": []}
    return True


def test_a_healthy_url_failing_predict_falls_through_to_the_next_and_is_marked_unhealthy(start_double, ml_server):
    """RunPod answering 400 (no worker within 2 minutes) while its /ping says healthy: the job is not lost, the CPU
    container answers it; the failed URL counts as unhealthy until its next availability check."""
    gateway, cpu = ml_server(predict_status=400), ml_server()
    double = start_double(config=ml_config(gateway, cpu, clip=True, facialRecognition=False, ocr=False))
    double.admin_key()
    wait_for_health(double, [True, True])
    ids = upload_photos(double, 1)
    wait_for_jobs(double, {"smartSearch": 1})
    assert queues(double)["smartSearch"]["statistics"]["failed"] == 0
    attempts = requests.get(f"{double.url}/_double/ml", timeout=10).json()
    assert [(a["url"], a["status"]) for a in attempts] == [(gateway.url, 400), (cpu.url, 200)]
    wait_for_health(double, [False, True])
    upload_photos(double, 1)
    wait_for_jobs(double, {"smartSearch": 2})
    assert gateway.stats()["predicts"] == 1 and cpu.stats()["predicts"] == 2  # the unhealthy one is tried last
    assert embeddings(double)["assets"][ids[0]] == {"smartSearch": cpu.url}
    assert queues(double)["faceDetection"]["statistics"]["completed"] == 0  # disabled features queue nothing


def test_availability_checks_disabled_ping_nothing_and_keep_the_config_order(start_double, ml_server):
    gateway, cpu = ml_server(ping_status=503), ml_server()
    double = start_double(config=ml_config(gateway, cpu, checks=False, facialRecognition=False, ocr=False))
    double.admin_key()
    upload_photos(double, 2)
    wait_for_jobs(double, {"smartSearch": 2})
    assert gateway.stats()["predicts"] == 2 and cpu.stats()["predicts"] == 0
    assert gateway.stats()["pings"] == 0 and cpu.stats()["pings"] == 0
    health = requests.get(f"{double.url}/_double/ml/health", timeout=10).json()
    assert health["availabilityChecks"] is False and [url["pings"] for url in health["urls"]] == [0, 0]
    # Without checks every URL counts as healthy, whatever the last predict did: a failing first URL is still
    # tried first by every job (with checks on, its failure would send the next jobs to the second URL first).
    gateway.fault(predict_status=500)
    upload_photos(double, 3)
    wait_for_jobs(double, {"smartSearch": 5})
    assert gateway.stats()["predicts"] == 2 + 3 and cpu.stats()["predicts"] == 3


def test_availability_checks_repeat_every_interval_and_follow_the_ping(start_double, ml_server):
    gateway, cpu = ml_server(ping_status=503), ml_server()
    double = start_double(config=ml_config(gateway, cpu, interval_ms=300))
    double.admin_key()
    wait_for_health(double, [False, True])
    gateway.fault(ping_status=0)  # the router switches to burst
    wait_for_health(double, [True, True])
    assert gateway.stats()["pings"] >= 2


def test_queues_list_pause_resume_and_the_counters(start_double, ml_server):
    cpu = ml_server()
    double = start_double(config=ml_config(cpu))
    double.admin_key()
    listed = queues(double)
    assert set(ML_QUEUES) <= set(listed) and len(listed) == 19
    assert listed["smartSearch"] == {"name": "smartSearch", "isPaused": False, "statistics": {
        "active": 0, "completed": 0, "failed": 0, "delayed": 0, "waiting": 0, "paused": 0}}
    paused = api(double, "PUT", "/api/queues/smartSearch", {"isPaused": True})
    assert (paused.status_code, paused.json()["isPaused"]) == (200, True)
    upload_photos(double, 3)
    wait_for_jobs(double, {"faceDetection": 3, "ocr": 3})
    one = api(double, "GET", "/api/queues/smartSearch").json()
    assert one["isPaused"] is True
    assert one["statistics"] == {"active": 0, "completed": 0, "failed": 0, "delayed": 0, "waiting": 0, "paused": 3}
    # A "missing" run while paused queues no second job for an asset that already waits.
    legacy = api(double, "PUT", "/api/jobs/smartSearch", {"command": "start", "force": False})
    assert legacy.status_code == 200, legacy.text
    assert legacy.json() == {"jobCounts": one["statistics"], "queueStatus": {"isActive": False, "isPaused": True}}
    time.sleep(0.5)
    assert cpu.stats()["predicts_by_task"].get("clip.visual", 0) == 0  # a paused queue starts no job
    resumed = api(double, "PUT", "/api/queues/smartSearch", {"isPaused": False})
    assert (resumed.status_code, resumed.json()["isPaused"]) == (200, False)
    done = wait_for_jobs(double, {"smartSearch": 3})
    assert done["smartSearch"]["statistics"]["completed"] == 3
    assert cpu.stats()["predicts_by_task"]["clip.visual"] == 3


def test_queue_api_refuses_bad_names_bodies_and_non_admins(start_double):
    double = start_double()
    double.admin_key()
    assert api(double, "GET", "/api/queues/noSuchQueue").status_code == 400
    assert api(double, "PUT", "/api/queues/noSuchQueue", {"isPaused": True}).status_code == 400
    assert api(double, "PUT", "/api/queues/ocr", {"isPaused": "yes"}).status_code == 400
    assert api(double, "PUT", "/api/jobs/ocr", {"command": "go"}).status_code == 400
    assert api(double, "PUT", "/api/jobs/ocr", {"command": "start", "force": "no"}).status_code == 400
    assert api(double, "PUT", "/api/jobs/ocr", [1]).status_code == 400  # not a JSON object
    assert api(double, "PUT", "/api/jobs/backgroundTask", {"command": "start"}).status_code == 400  # no "queue all"
    assert api(double, "PUT", "/api/queues/backgroundTask", {"isPaused": True}).status_code == 400
    assert api(double, "GET", "/api/queues", key="wrong").status_code == 401
    # A user who is no admin (the double has no user-creation API: straight into its tables).
    user, secret = str(uuid.uuid4()), "non-admin-key"
    with contextlib.closing(psycopg2.connect(**double.db)) as connection, connection.cursor() as cursor:
        connection.autocommit = True
        cursor.execute("INSERT INTO users (id, email, name, password_sha256, is_admin) VALUES (%s, 'u@x.test', 'U',"
                       " 'x', false)", (user,))
        cursor.execute("INSERT INTO tokens (token, user_id, kind, id) VALUES (%s, %s, 'api-key', %s)",
                       (hashlib.sha256(secret.encode()).hexdigest(), user, str(uuid.uuid4())))
    assert api(double, "GET", "/api/users/me", key=secret).status_code == 200
    assert api(double, "GET", "/api/queues", key=secret).status_code == 403
    assert api(double, "GET", "/api/queues/ocr", key=secret).status_code == 403
    assert api(double, "PUT", "/api/queues/ocr", {"isPaused": True}, key=secret).status_code == 403
    assert api(double, "PUT", "/api/jobs/ocr", {"command": "start"}, key=secret).status_code == 403
    assert api(double, "GET", "/api/queues/ocr").json()["isPaused"] is False
    # ML off: a smart search is refused, as Immich does.
    assert smart_search(double, "x").status_code == 400


def test_a_failed_job_is_not_retried_and_the_missing_run_redoes_only_the_assets_without_a_result(
        start_double, ml_server):
    cpu = ml_server(predict_status=500)
    double = start_double(config=ml_config(cpu, facialRecognition=False))
    double.admin_key()
    failed = upload_photos(double, 2)
    done = wait_for_jobs(double, {"smartSearch": 2, "ocr": 2})
    assert done["smartSearch"]["statistics"]["failed"] == 2 and done["ocr"]["statistics"]["failed"] == 2
    time.sleep(1)
    assert cpu.stats()["predicts"] == 4  # one attempt per job: none retried
    assert embeddings(double)["missing"] == {"smartSearch": 2, "ocr": 2}
    cpu.fault(predict_status=0)
    good = upload_photos(double, 1)
    wait_for_jobs(double, {"smartSearch": 3, "ocr": 3})
    assert cpu.stats()["predicts_by_task"] == {"clip.visual": 1, "ocr": 1}

    legacy = api(double, "PUT", "/api/jobs/smartSearch", {"command": "start", "force": False})
    assert legacy.status_code == 200, legacy.text
    wait_for_jobs(double, {"smartSearch": 5})
    assert cpu.stats()["predicts_by_task"] == {"clip.visual": 3, "ocr": 1}  # the two missing, not the third
    found = embeddings(double)
    assert set(found["assets"]) == {*failed, *good}
    assert all(found["assets"][asset] == {"smartSearch": cpu.url} for asset in failed)
    assert found["missing"] == {"smartSearch": 0, "ocr": 2}  # the ocr queue was not asked
    forced = api(double, "PUT", "/api/jobs/smartSearch", {"command": "start", "force": True})
    assert forced.status_code == 200
    wait_for_jobs(double, {"smartSearch": 8})
    assert cpu.stats()["predicts_by_task"]["clip.visual"] == 6  # force: every asset again


def test_all_urls_failing_fails_the_job_and_the_search(start_double, ml_server):
    gateway, cpu = ml_server(predict_status=503), ml_server(predict_status=500)
    double = start_double(config=ml_config(gateway, cpu, facialRecognition=False, ocr=False))
    double.admin_key()
    upload_photos(double, 1)
    done = wait_for_jobs(double, {"smartSearch": 1})
    assert done["smartSearch"]["statistics"]["failed"] == 1
    assert smart_search(double, "anything").status_code == 500
    assert gateway.stats()["predicts"] == 2 and cpu.stats()["predicts"] == 2
    assert "failed for all URLs" in double.log.read_text()


def test_a_start_while_the_queue_has_an_active_job_is_refused():
    """QueueService.start: "Job is already running" (400) while a job of that queue is active; the router's missing
    run must come after the queue drained."""
    double = load_double()
    jobs = double.JobQueues(type("Api", (), {"config": {}})())
    jobs.queues["smartSearch"].active.append(str(uuid.uuid4()))
    with pytest.raises(double.BadRequest, match="Job is already running"):
        jobs.command("smartSearch", "start", False)
    jobs.command("ocr", "pause", False)
    assert jobs.dto("ocr")["isPaused"] is True
