#!/usr/bin/env python3
"""TEST DOUBLE of the Immich server (tests and the lab only; never a production image).

The real ``ghcr.io/immich-app/immich-server`` cannot be pulled here, so this stands in for the parts of it
the ``immich`` role orchestrates, behaving as Immich v3 does (FACTS §1):

- **mount checks**: on first boot it writes ``<media>/<folder>/.immich`` for every media folder and records
  that in the database (Immich's ``SystemFlags.mountChecks``); on a later boot a missing marker is fatal,
  ``ImmichStartupError: Failed to read: <media>/<folder>/.immich`` (the container crash-loops);
- **config file**: loads ``IMMICH_CONFIG_FILE`` (JSON, or YAML by extension) and refuses unknown keys,
  checked against the key tree of @immich/sdk's ``AdminConfigDto`` (``admin_config_keys.json``);
- **Postgres and Redis**: connects with the env the role gives it (``DB_HOSTNAME``, ``DB_USERNAME``,
  ``DB_PASSWORD``, ``DB_DATABASE_NAME``, ``REDIS_HOSTNAME``, ...) and keeps users, API keys and assets in
  Postgres; it refuses to start when either is unreachable;
- **API** (``/api``): ``GET /server/ping``, ``/server/version``, ``/server/config``, ``/server/media-types``,
  ``/users/me``, ``/api-keys/me``; ``POST /auth/admin-sign-up``, ``/auth/login``, ``/api-keys``,
  ``/assets/bulk-upload-check`` and ``/assets`` (v3 multipart: ``assetData``, ``fileCreatedAt``,
  ``fileModifiedAt``; ``deviceId``/``deviceAssetId`` are refused as in v3); ``/.well-known/immich``;
- **storage**: the original goes to ``<media>/upload/<userId>/<xx>/<yy>/<assetId>.<ext>``, a thumbnail
  (a small placeholder file, not an image) to ``<media>/thumbs/<userId>/<xx>/<yy>/<assetId>-thumbnail.webp``;
- **machine learning**: for each asset it asks the ``machineLearning.urls`` in order (``GET /ping`` as the
  availability check, then Immich's multipart ``POST /predict`` for the CLIP visual embedding) and uses the
  first that answers, trying the next on failure. ``GET /_double/ml`` reports the attempts.

Standard library plus psycopg2 and PyYAML (Debian's python3-psycopg2, python3-yaml).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import yaml

MEDIA = Path(os.environ.get("IMMICH_MEDIA_LOCATION", "/data"))
FOLDERS = ["upload", "library", "thumbs", "encoded-video", "profile", "backups"]
KEYS_FILE = Path(__file__).with_name("admin_config_keys.json")
VERSION_FILE = Path("/etc/immich-double-version")
IMAGE_TYPES = [".jpg", ".jpeg", ".png", ".heic", ".webp", ".gif", ".tif", ".tiff", ".dng"]
VIDEO_TYPES = [".mp4", ".mov", ".webm"]
ML_ATTEMPTS: list[dict] = []


class StartupError(Exception):
    """Immich's ImmichStartupError: the process exits and Docker restarts it (crash loop)."""


def log(message: str) -> None:
    print(f"[immich-double] {message}", flush=True)


def unknown_keys(config: object, known: object, prefix: str = "") -> list[str]:
    if not isinstance(config, dict):
        return []
    bad = []
    for key, value in config.items():
        if not isinstance(known, dict) or key not in known:
            bad.append(prefix + key)
        elif isinstance(known[key], dict):
            bad.extend(unknown_keys(value, known[key], prefix + key + "."))
    return bad


def load_config() -> dict:
    path = os.environ.get("IMMICH_CONFIG_FILE")
    if not path:
        return {}
    try:
        text = Path(path).read_text()
        config = yaml.safe_load(text) if path.endswith((".yml", ".yaml")) else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise StartupError(f"Failed to load config file {path}: {error}") from error
    bad = unknown_keys(config, json.loads(KEYS_FILE.read_text()))
    if bad:
        raise StartupError(f"Invalid value(s) in config file {path}: unknown key(s) {', '.join(bad)}")
    return config


def connect_db():
    settings = {
        "host": os.environ.get("DB_HOSTNAME", "database"),
        "port": int(os.environ.get("DB_PORT", "5432")),
        "user": os.environ.get("DB_USERNAME", "postgres"),
        "password": os.environ.get("DB_PASSWORD", ""),
        "dbname": os.environ.get("DB_DATABASE_NAME", "immich"),
    }
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = psycopg2.connect(connect_timeout=5, **settings)
            connection.autocommit = True
            return connection
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise StartupError(f"Could not connect to the database: {error}") from error
            time.sleep(2)


def ping_redis() -> None:
    host, port = os.environ.get("REDIS_HOSTNAME", "redis"), int(os.environ.get("REDIS_PORT", "6379"))
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"Could not connect to Redis at {host}:{port}")
        time.sleep(2)


SCHEMA = """
CREATE TABLE IF NOT EXISTS system_flags (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS users (id uuid PRIMARY KEY, email text UNIQUE NOT NULL, name text NOT NULL,
  password_sha256 text NOT NULL, is_admin boolean NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS tokens (token text PRIMARY KEY, user_id uuid NOT NULL, kind text NOT NULL,
  id uuid NOT NULL, name text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS assets (id uuid PRIMARY KEY, owner_id uuid NOT NULL, checksum text NOT NULL,
  original_path text NOT NULL, thumbnail_path text NOT NULL, file_created_at text, ml_url text);
"""


def mount_checks(db) -> None:
    """Immich's StorageService.onBootstrap: markers on first boot, a fatal read error when one is missing."""
    with db.cursor() as cursor:
        cursor.execute("SELECT value FROM system_flags WHERE key = 'mountChecks'")
        row = cursor.fetchone()
        if row is None:
            for folder in FOLDERS:
                (MEDIA / folder).mkdir(parents=True, exist_ok=True)
                (MEDIA / folder / ".immich").write_text(f"{int(time.time() * 1000)}")
            cursor.execute(
                "INSERT INTO system_flags VALUES ('mountChecks', %s)", (json.dumps(dict.fromkeys(FOLDERS, True)),)
            )
            log(f"first boot: wrote .immich markers under {MEDIA}")
            return
    for folder in FOLDERS:
        marker = MEDIA / folder / ".immich"
        try:
            marker.read_text()
        except OSError as error:
            raise StartupError(f"Failed to read: {marker} ({error})") from error
    log("mount checks passed")


class Api:
    def __init__(self, db, config: dict, version: str) -> None:
        self.db, self.config, self.version = db, config, version
        self.lock = threading.Lock()

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock, self.db.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []

    def user(self, user_id: str) -> dict:
        (row,) = self.query("SELECT id, email, name, is_admin, created_at FROM users WHERE id = %s", (user_id,))
        return {
            "id": str(row[0]),
            "email": row[1],
            "name": row[2],
            "isAdmin": row[3],
            "avatarColor": "primary",
            "profileImagePath": "",
            "profileChangedAt": row[4].isoformat(),
            "createdAt": row[4].isoformat(),
            "updatedAt": row[4].isoformat(),
            "deletedAt": None,
            "status": "active",
            "storageLabel": None,
            "shouldChangePassword": False,
            "quotaSizeInBytes": None,
            "quotaUsageInBytes": 0,
            "oauthId": "",
            "license": None,
            "clusterGroupId": "",
        }

    def ml_urls(self) -> list[str]:
        ml = self.config.get("machineLearning", {})
        if ml.get("enabled", True) is False:
            return []
        return ml.get("urls") or [os.environ.get("IMMICH_MACHINE_LEARNING_URL", "http://immich-machine-learning:3003")]

    def smart_search(self, asset_id: str, data: bytes) -> str | None:
        """CLIP visual embedding from the first ML server that answers, then the next (Immich's loop)."""
        model = self.config.get("machineLearning", {}).get("clip", {}).get("modelName", "ViT-B-32__openai")
        entries = json.dumps({"clip": {"visual": {"modelName": model}}})
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n{entries}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{asset_id}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        for url in self.ml_urls():
            attempt = {"asset": asset_id, "url": url}
            ML_ATTEMPTS.append(attempt)
            try:
                with urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=5) as response:
                    attempt["ping"] = response.status
                request = urllib.request.Request(
                    url.rstrip("/") + "/predict",
                    data=body,
                    method="POST",
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    result = json.loads(response.read())
                attempt["status"] = response.status
                attempt["embedding"] = "clip" in result
                log(f"ML: {asset_id} clip visual from {url}")
                return url
            except (urllib.error.URLError, OSError, ValueError) as error:
                attempt["error"] = str(error)
                log(f"ML: {url} failed ({error}); trying the next URL")
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "immich-double"
    api: Api

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log(format % args)

    def send(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status: int, message: str) -> None:
        self.send(status, {"message": message, "statusCode": status, "correlationId": uuid.uuid4().hex})

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def json_body(self) -> dict:
        try:
            value = json.loads(self.body() or b"{}")
        except ValueError:
            value = None
        return value if isinstance(value, dict) else {}

    def authenticated_user(self) -> str | None:
        token = self.headers.get("x-api-key")
        authorization = self.headers.get("Authorization", "")
        if not token and authorization.startswith("Bearer "):
            token = authorization[7:]
        if not token:
            return None
        rows = self.api.query(
            "SELECT user_id FROM tokens WHERE token = %s", (hashlib.sha256(token.encode()).hexdigest(),)
        )
        return str(rows[0][0]) if rows else None

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        path = self.path.split("?")[0]
        if path == "/.well-known/immich":
            return self.send(200, {"api": {"endpoint": "/api"}})
        if path == "/api/server/ping":
            return self.send(200, {"res": "pong"})
        if path == "/api/server/version":
            major, minor, patch = (int(part) for part in self.api.version.lstrip("v").split("."))
            return self.send(200, {"major": major, "minor": minor, "patch": patch})
        if path == "/api/server/media-types":
            return self.send(200, {"image": IMAGE_TYPES, "video": VIDEO_TYPES, "sidecar": [".xmp"]})
        if path == "/api/server/config":
            initialized = bool(self.api.query("SELECT 1 FROM users WHERE is_admin"))
            return self.send(
                200,
                {
                    "isInitialized": initialized,
                    "isOnboarded": initialized,
                    "externalDomain": self.api.config.get("server", {}).get("externalDomain", ""),
                },
            )
        if path == "/_double/ml":
            return self.send(200, ML_ATTEMPTS)
        user_id = self.authenticated_user()
        if user_id is None:
            return self.error(401, "Authentication required")
        if path == "/api/users/me":
            return self.send(200, self.api.user(user_id))
        if path == "/api/api-keys/me":
            return self.send(
                200, {"id": str(uuid.uuid4()), "name": "cli", "permissions": ["all"], "createdAt": "", "updatedAt": ""}
            )
        return self.error(404, f"Cannot GET {path}")

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        path = self.path.split("?")[0]
        if path == "/api/auth/admin-sign-up":
            return self.admin_sign_up(self.json_body())
        if path == "/api/auth/login":
            return self.login(self.json_body())
        user_id = self.authenticated_user()
        if user_id is None:
            self.body()
            return self.error(401, "Authentication required")
        if path == "/api/api-keys":
            return self.create_api_key(user_id, self.json_body())
        if path == "/api/assets/bulk-upload-check":
            return self.bulk_upload_check(user_id, self.json_body())
        if path == "/api/assets":
            return self.upload(user_id)
        self.body()
        return self.error(404, f"Cannot POST {path}")

    def admin_sign_up(self, dto: dict) -> None:
        if not all(isinstance(dto.get(key), str) and dto[key] for key in ("email", "name", "password")):
            return self.error(400, "email, name and password are required")
        if self.api.query("SELECT 1 FROM users WHERE is_admin"):
            return self.error(400, "The server already has an admin")
        user_id = str(uuid.uuid4())
        self.api.query(
            "INSERT INTO users (id, email, name, password_sha256, is_admin) VALUES (%s, %s, %s, %s, true)",
            (user_id, dto["email"].lower(), dto["name"], hashlib.sha256(dto["password"].encode()).hexdigest()),
        )
        self.send(201, self.api.user(user_id))

    def login(self, dto: dict) -> None:
        rows = self.api.query(
            "SELECT id, name, is_admin FROM users WHERE email = %s AND password_sha256 = %s",
            (str(dto.get("email", "")).lower(), hashlib.sha256(str(dto.get("password", "")).encode()).hexdigest()),
        )
        if not rows:
            return self.error(401, "Incorrect email or password")
        token = secrets.token_urlsafe(32)
        self.api.query(
            "INSERT INTO tokens (token, user_id, kind, id) VALUES (%s, %s, 'session', %s)",
            (hashlib.sha256(token.encode()).hexdigest(), rows[0][0], str(uuid.uuid4())),
        )
        self.send(
            201,
            {
                "accessToken": token,
                "userId": str(rows[0][0]),
                "userEmail": dto["email"],
                "name": rows[0][1],
                "isAdmin": rows[0][2],
                "isOnboarded": False,
                "profileImagePath": "",
                "shouldChangePassword": False,
            },
        )

    def create_api_key(self, user_id: str, dto: dict) -> None:
        # As Immich makes them (its crypto repository's randomBytesAsText: base64 of 32 random bytes without the
        # non-word characters): letters and digits only. A urlsafe token may start with "-", which a CLI reads as
        # an option (`immich login <url> -abc…` failed once in 64 runs of the lab).
        secret = re.sub(r"\W", "", base64.b64encode(secrets.token_bytes(32)).decode())
        key_id = str(uuid.uuid4())
        self.api.query(
            "INSERT INTO tokens (token, user_id, kind, id, name) VALUES (%s, %s, 'api-key', %s, %s)",
            (hashlib.sha256(secret.encode()).hexdigest(), user_id, key_id, dto.get("name", "API Key")),
        )
        key = {
            "id": key_id,
            "name": dto.get("name", "API Key"),
            "permissions": dto.get("permissions", ["all"]),
            "createdAt": "",
            "updatedAt": "",
        }
        self.send(201, {**key, "apiKey": key, "secret": secret})

    def bulk_upload_check(self, user_id: str, dto: dict) -> None:
        results = []
        for asset in dto.get("assets", []):
            rows = self.api.query(
                "SELECT id FROM assets WHERE owner_id = %s AND checksum = %s", (user_id, asset.get("checksum", ""))
            )
            if rows:
                results.append(
                    {"id": asset.get("id"), "action": "reject", "reason": "duplicate", "assetId": str(rows[0][0])}
                )
            else:
                results.append({"id": asset.get("id"), "action": "accept"})
        self.send(200, {"results": results})

    def upload(self, user_id: str) -> None:
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            self.body()
            return self.error(400, "multipart/form-data expected")
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + self.body())
        fields, files = {}, {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None:
                files[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
            else:
                fields[name] = (part.get_payload(decode=True) or b"").decode()
        removed = [name for name in ("deviceId", "deviceAssetId") if name in fields]
        if removed or "assetData" not in files or not all(fields.get(k) for k in ("fileCreatedAt", "fileModifiedAt")):
            return self.error(
                400, f"invalid upload: need assetData, fileCreatedAt, fileModifiedAt; removed in v3: {removed}"
            )
        filename, data = files["assetData"]
        checksum = hashlib.sha1(data).hexdigest()  # noqa: S324 - Immich identifies assets by SHA-1
        rows = self.api.query("SELECT id FROM assets WHERE owner_id = %s AND checksum = %s", (user_id, checksum))
        if rows:
            return self.send(200, {"id": str(rows[0][0]), "status": "duplicate"})
        asset_id = str(uuid.uuid4())
        shard = Path(user_id) / asset_id[:2] / asset_id[2:4]
        original = MEDIA / "upload" / shard / f"{asset_id}{Path(fields.get('filename') or filename).suffix.lower()}"
        thumbnail = MEDIA / "thumbs" / shard / f"{asset_id}-thumbnail.webp"
        original.parent.mkdir(parents=True, exist_ok=True)
        original.write_bytes(data)
        thumbnail.parent.mkdir(parents=True, exist_ok=True)
        thumbnail.write_bytes(b"immich-double thumbnail of " + base64.b64encode(hashlib.sha256(data).digest()))
        ml_url = self.api.smart_search(asset_id, data)
        self.api.query(
            "INSERT INTO assets VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (asset_id, user_id, checksum, str(original), str(thumbnail), fields["fileCreatedAt"], ml_url),
        )
        self.send(201, {"id": asset_id, "status": "created"})


def main() -> None:
    version = (
        VERSION_FILE.read_text().strip() if VERSION_FILE.exists() else os.environ.get("IMMICH_DOUBLE_VERSION", "v3.3.1")
    )
    log(f"Immich server TEST DOUBLE {version} starting")
    try:
        config = load_config()
        db = connect_db()
        db.cursor().execute(SCHEMA)
        ping_redis()
        mount_checks(db)
    except StartupError as error:
        log(f"ImmichStartupError: {error}")
        sys.exit(1)
    Handler.api = Api(db, config, version)
    server = ThreadingHTTPServer(
        (os.environ.get("IMMICH_HOST", "0.0.0.0"), int(os.environ.get("IMMICH_PORT", "2283"))), Handler
    )  # noqa: S104
    log(f"listening on {server.server_address}")
    server.serve_forever()


if __name__ == "__main__":
    main()
