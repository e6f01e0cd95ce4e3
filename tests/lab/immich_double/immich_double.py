#!/usr/bin/env python3
"""TEST DOUBLE of the Immich server (tests and the lab only; never a production image).

The real ``ghcr.io/immich-app/immich-server`` cannot be pulled here, so this stands in for the parts of it
the ``immich`` role orchestrates, behaving as Immich v3 does (docs/decisions.md, Immich):

- **mount checks**: on first boot it writes ``<media>/<folder>/.immich`` for every media folder and records
  that in the database (Immich's ``SystemFlags.mountChecks``); on a later boot a missing marker is fatal,
  ``ImmichStartupError: Failed to read: <media>/<folder>/.immich`` (the container crash-loops);
- **config file**: loads ``IMMICH_CONFIG_FILE`` (JSON, or YAML by extension) and refuses unknown keys,
  checked against the leaf paths of @immich/sdk's ``AdminConfigDto`` that the role reads too (``config_keys.json``,
  a link to ``roles/immich/files/config_keys.json``);
- **Postgres and Redis**: connects with the env the role gives it (``DB_HOSTNAME``, ``DB_USERNAME``,
  ``DB_PASSWORD``, ``DB_DATABASE_NAME``, ``REDIS_HOSTNAME``, ...) and keeps users, API keys and assets in
  Postgres; it refuses to start when either is unreachable;
- **API** (``/api``): ``GET /server/ping``, ``/server/version``, ``/server/config``, ``/server/media-types``,
  ``/users/me``, ``/api-keys/me``, ``/assets/{id}``, ``/assets/{id}/original``; ``POST /auth/admin-sign-up``,
  ``/auth/login``, ``/api-keys``, ``/assets/bulk-upload-check``, ``/search/metadata`` and ``/assets`` (v3
  multipart: ``assetData``, ``fileCreatedAt``, ``fileModifiedAt``, optional ``filename``, ``duration``,
  ``isFavorite``, ``visibility``, ``sidecarData``); ``/.well-known/immich``;
- **request validation** as Immich's (``ValidationPipe({transform: true, whitelist: true})`` in
  ``server/src/app.module.ts``, no ``forbidNonWhitelisted``): unknown JSON and multipart fields are dropped,
  not refused (so the ``deviceId``/``deviceAssetId`` that v3 removed, which older clients such as Home
  Assistant's aioimmich still send, are ignored); a missing or malformed required field is a 400; an unexpected
  *file* field is a 400 (multer's ``Unexpected field``), so is a file type Immich does not take;
- **uploads** as Immich stores them: the body is streamed (Content-Length or chunked) to a temporary file
  beside the final one, SHA-1 computed on the way, fsynced and renamed into place; the asset row is inserted
  only after the rename, and the unique (owner, checksum) index decides duplicates (HTTP 200,
  ``{"status": "duplicate", "id": <existing>}``, the new file removed; also straight away when the
  ``x-immich-checksum`` header names a known asset). A failed write (ENOSPC, ENOTCONN of a dead SSHFS mount,
  a client gone mid-body) leaves neither the temporary nor the final file and no row, and answers 500; a file
  that cannot be removed then (a dead mount) is removed by a retry every 10 s once it can;
- **storage**: the original goes to ``<media>/upload/<userId>/<xx>/<yy>/<assetId>.<ext>``, a thumbnail
  (a small placeholder file, not an image) to ``<media>/thumbs/<userId>/<xx>/<yy>/<assetId>-thumbnail.webp``;
- **machine learning** as Immich's MachineLearningRepository: with ``machineLearning.availabilityChecks`` on
  (default; ``timeout`` 2000 ms, ``interval`` 30000 ms) a background thread pings ``<url>ping`` for every URL at
  start and every interval (healthy = 2xx within the timeout); a predict tries the healthy URLs in config order,
  then the others; a non-2xx or a network error tries the next (and marks that URL unhealthy, a success marks it
  healthy); all failing fails the job. Checks off: all healthy, no pings. ``GET /_double/ml`` lists every predict
  attempt, ``/_double/ml/health`` the URLs' health and ping counts, ``/_double/ml/embeddings`` per asset the queues
  with a result and the URL that gave it;
- **job queues** (in memory: lost when the double restarts, where Immich keeps them in Valkey): an upload queues
  one job per ML queue (``smartSearch``, ``faceDetection``, ``ocr``; concurrency 2, 2, 1; only when that feature
  is enabled), each a ``POST /predict`` with Immich's ``entries``; a failed job is not retried (BullMQ attempts 1).
  ``GET /api/queues``, ``GET|PUT /api/queues/{name}`` (``{"isPaused"}``; a paused queue starts no job, uploads
  still queue) and the legacy ``PUT /api/jobs/{name}`` (``{"command": "start", "force": false}`` = the "missing"
  run), admin only; ``POST /api/search/smart`` asks the URLs for the query's CLIP textual embedding;
- **client addresses** as express computes ``req.ip`` with Immich's ``trust proxy`` (``server/src/app.common.ts``:
  loopback + ``IMMICH_TRUSTED_PROXIES``, a comma list of IPs/CIDRs, default ``linklocal,uniquelocal``; an entry
  that is neither stops the start, as Immich's ``EnvDto`` does): the socket's peer, then the ``X-Forwarded-For``
  entries right to left; the client is the first address that is not trusted, else the furthest. Every request is
  logged with its client address and peer; a failed ``POST /auth/login`` logs Immich's own line
  (``AuthService.login``) in Nest's console format, coloured unless ``NO_COLOR`` is set, as Immich's logger:
  ``[Nest] <pid>  - <date>, <time>    WARN [Api:AuthService~<cid>] Failed login attempt for user <email> from
  ip address <client>``, and answers 401 ``Incorrect email or password``;

Test hook (tests only, never set in the lab): ``IMMICH_DOUBLE_TEST_FAIL_UPLOAD_WRITE=<ERRNO name>:<bytes>``
makes the write of an upload fail with that errno once ``<bytes>`` bytes are on disk (``ENOTCONN:65536`` is
what a dead SSHFS mount does mid-file); ``<ERRNO name>:rename`` makes the rename into place fail.

Standard library plus psycopg2 and PyYAML (Debian's python3-psycopg2, python3-yaml).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import psycopg2
import psycopg2.errors
import yaml

MEDIA = Path(os.environ.get("IMMICH_MEDIA_LOCATION", "/data"))
FOLDERS = ["upload", "library", "thumbs", "encoded-video", "profile", "backups"]
KEYS_FILE = Path(__file__).with_name("config_keys.json")
VERSION_FILE = Path("/etc/immich-double-version")
DEFAULT_ML_URL = "http://immich-machine-learning:3003"  # Immich's IMMICH_MACHINE_LEARNING_URL default
IMAGE_TYPES = [".jpg", ".jpeg", ".png", ".heic", ".webp", ".gif", ".tif", ".tiff", ".dng"]
VIDEO_TYPES = [".mp4", ".mov", ".webm"]
ML_ATTEMPTS: list[dict] = []
CHUNK = 64 * 1024
FIELD_LIMIT = 1024 * 1024  # busboy's default fieldSize: a larger text field is refused
JSON_LIMIT = 10 * 1024 * 1024
VISIBILITIES = ("archive", "timeline", "hidden", "locked")


class StartupError(Exception):
    """Immich's ImmichStartupError: the process exits and Docker restarts it (crash loop)."""


def log(message: str) -> None:
    print(f"[immich-double] {message}", flush=True)


# -- Client addresses: express's `trust proxy` (proxy-addr) with Immich's list ---------------------------------------
# proxy-addr's named ranges; Immich puts "loopback" first and defaults IMMICH_TRUSTED_PROXIES to the other two.
PROXY_PRESETS = {
    "loopback": ["127.0.0.1/8", "::1/128"],
    "linklocal": ["169.254.0.0/16", "fe80::/10"],
    "uniquelocal": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_ip_or_range(entry: str) -> bool:
    """validator's isIP / isIPRange (what Immich's EnvDto accepts in IMMICH_TRUSTED_PROXIES)."""
    address, slash, prefix = entry.partition("/")
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        return False
    if not slash:
        return True
    return bool(re.fullmatch(r"0|[1-9][0-9]{0,2}", prefix)) and int(prefix) <= (32 if version == 4 else 128)


def trusted_proxies(setting: str | None) -> list[Network]:
    """The ranges express trusts: loopback, then IMMICH_TRUSTED_PROXIES (unset: linklocal, uniquelocal)."""
    if setting is None:
        entries = ["linklocal", "uniquelocal"]
    else:
        entries = [entry.strip() for entry in setting.split(",") if entry.strip()]
        if not entries or not all(is_ip_or_range(entry) for entry in entries):
            raise StartupError(f"Invalid environment variables: IMMICH_TRUSTED_PROXIES={','.join(entries)}")
    return [
        ipaddress.ip_network(item, strict=False) for entry in ["loopback", *entries]
        for item in PROXY_PRESETS.get(entry, [entry])
    ]


def is_trusted(address: str, trusted: list[Network]) -> bool:
    """proxy-addr's trust function: not an IP = untrusted; IPv4 and IPv4-mapped IPv6 compare as the same address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for network in trusted:
        candidate: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ip
        if ip.version != network.version:
            candidate = ip.ipv4_mapped if network.version == 4 else ipaddress.IPv6Address(f"::ffff:{ip}")
        if candidate is not None and candidate in network:
            return True
    return False


def client_address(peer: str, forwarded_for: str, trusted: list[Network]) -> str:
    """express's req.ip: the socket's peer, then the X-Forwarded-For entries right to left (the `forwarded` package:
    split on commas, spaces trimmed, empty entries dropped); the first address not trusted, else the furthest."""
    entries = [entry.strip(" ") for entry in forwarded_for.split(",") if entry.strip(" ")]
    addresses = [peer, *reversed(entries)]
    for address in addresses[:-1]:
        if not is_trusted(address, trusted):
            return address
    return addresses[-1]


# -- Immich's logger: Nest's ConsoleLogger with Immich's context ------------------------------------------------
NEST_COLORS = {"LOG": 32, "WARN": 33, "ERROR": 31}


def nest_line(level: str, context: str, message: str, now: datetime | None = None) -> str:
    """One line as Immich writes it to stdout: `[Nest] <pid>  - <date>, <time> <LEVEL padded to 7> [<context>] <text>`.
    The date is Intl.DateTimeFormat's en-US form, as Node 22 prints it (a narrow no-break space before AM/PM);
    without NO_COLOR the pid, level and text take the level's colour and the context yellow."""
    now = now or datetime.now().astimezone()
    stamp = f"{now:%m/%d/%Y}, {now.hour % 12 or 12}:{now:%M:%S}\u202f{'AM' if now.hour < 12 else 'PM'}"
    colored = not os.environ.get("NO_COLOR")

    def paint(text: str, code: int) -> str:
        return f"\x1b[{code}m{text}\x1b[39m" if colored else text

    code = NEST_COLORS[level]
    return (f"{paint(f'[Nest] {os.getpid()}  - ', code)}{stamp} {paint(level.rjust(7), code)} "
            f"{paint(f'[{context}]', 33)} {paint(message, code)}")


def correlation_id() -> str:
    """nestjs-cls's generated request id (Math.random().toString(36).slice(-8))."""
    return "".join(secrets.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(8))


def unknown_keys(config: object, known: set[str], prefix: str = "") -> list[str]:
    """The paths in config that are neither a known leaf (any value) nor a section above one."""
    if not isinstance(config, dict):
        return []
    bad = []
    for key, value in config.items():
        path = prefix + key
        if any(known_path.startswith(path + ".") for known_path in known):
            bad.extend(unknown_keys(value, known, path + "."))
        elif path not in known:
            bad.append(path)
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
    bad = unknown_keys(config, set(json.loads(KEYS_FILE.read_text())["paths"]))
    if bad:
        raise StartupError(f"Invalid value(s) in config file {path}: unknown key(s) {', '.join(bad)}")
    return config


def connect_db(patience: float = 60):
    """A connection to Immich's database, retried for `patience` seconds (at start: the database may be starting)."""
    settings = {
        "host": os.environ.get("DB_HOSTNAME", "database"),
        "port": int(os.environ.get("DB_PORT", "5432")),
        "user": os.environ.get("DB_USERNAME", "postgres"),
        "password": os.environ.get("DB_PASSWORD", ""),
        "dbname": os.environ.get("DB_DATABASE_NAME", "immich"),
    }
    deadline = time.monotonic() + patience
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
ALTER TABLE assets ADD COLUMN IF NOT EXISTS file_modified_at text;
ALTER TABLE assets ADD COLUMN IF NOT EXISTS original_file_name text NOT NULL DEFAULT '';
ALTER TABLE assets ADD COLUMN IF NOT EXISTS is_favorite boolean NOT NULL DEFAULT false;
ALTER TABLE assets ADD COLUMN IF NOT EXISTS visibility text NOT NULL DEFAULT 'timeline';
ALTER TABLE assets ADD COLUMN IF NOT EXISTS duration text;
ALTER TABLE assets ADD COLUMN IF NOT EXISTS sidecar_path text;
ALTER TABLE assets ADD COLUMN IF NOT EXISTS size bigint NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE assets ALTER COLUMN thumbnail_path SET DEFAULT '';
-- Immich's UQ_assets_owner_checksum: the database, not a look-up before the write, decides a duplicate.
CREATE UNIQUE INDEX IF NOT EXISTS assets_owner_checksum ON assets (owner_id, checksum);
-- What Immich keeps per asset after an ML job (smart_search embedding, faces, OCR): here the URL that answered.
CREATE TABLE IF NOT EXISTS ml_results (asset_id uuid NOT NULL, queue text NOT NULL, url text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (asset_id, queue));
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
        self.jobs = JobQueues(self)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """One statement. As Immich's connection pool does, a connection the database dropped (a restarted or killed
        PostgreSQL) is discarded: the statement in flight fails (the request answers 500), the next one connects
        again. Never retried: its outcome is unknown."""
        with self.lock:
            if self.db is None or self.db.closed:
                try:
                    self.db = connect_db(patience=0)
                except StartupError as error:
                    raise psycopg2.OperationalError(str(error)) from error
            try:
                with self.db.cursor() as cursor:
                    cursor.execute(sql, args)
                    return cursor.fetchall() if cursor.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                with contextlib.suppress(psycopg2.Error):
                    self.db.close()
                self.db = None
                raise

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


# -- Machine learning: Immich's MachineLearningRepository and the three ML job queues ---------------------------------
# The queues as @immich/sdk 3.2's QueueName lists them; only these three call ML (facialRecognition is DB-only).
QUEUE_NAMES = (
    "thumbnailGeneration", "metadataExtraction", "videoConversion", "faceDetection", "facialRecognition",
    "smartSearch", "duplicateDetection", "backgroundTask", "storageTemplateMigration", "migration", "search",
    "sidecar", "library", "notifications", "backupDatabase", "ocr", "workflow", "integrityCheck", "editor",
)
ML_CONCURRENCY = {"smartSearch": 2, "faceDetection": 2, "ocr": 1}  # Immich's default job concurrency
ML_FEATURE = {"smartSearch": "clip", "faceDetection": "facialRecognition", "ocr": "ocr"}
QUEUE_COMMANDS = ("start", "pause", "resume", "empty", "clear-failed")
# The queues QueueService.start has a "queue all" job for; a start on any other is "Invalid job name" (400).
STARTABLE = ("videoConversion", "storageTemplateMigration", "migration", "smartSearch", "duplicateDetection",
             "metadataExtraction", "sidecar", "thumbnailGeneration", "faceDetection", "facialRecognition", "library",
             "backupDatabase", "ocr")


class MachineLearningError(Exception):
    """Every URL failed: "Machine learning request '<entries>' failed for all URLs"."""


def ml_settings(config: dict) -> dict:
    """config.machineLearning with Immich's defaults (IMMICH_MACHINE_LEARNING_URL/_ENABLED seed two of them)."""
    ml = config.get("machineLearning") or {}
    checks = ml.get("availabilityChecks") or {}
    seeded = os.environ.get("IMMICH_MACHINE_LEARNING_ENABLED", "true").lower() != "false"
    return {
        "enabled": ml.get("enabled", seeded) is not False,
        "urls": list(ml.get("urls") or [os.environ.get("IMMICH_MACHINE_LEARNING_URL", DEFAULT_ML_URL)]),
        "checks": checks.get("enabled", True) is not False,
        "timeout": float(checks.get("timeout", 2000)) / 1000,
        "interval": float(checks.get("interval", 30000)) / 1000,
        "clip": {"enabled": True, "modelName": "ViT-B-32__openai", **(ml.get("clip") or {})},
        "facialRecognition": {"enabled": True, "modelName": "buffalo_l", "minScore": 0.7,
                              **(ml.get("facialRecognition") or {})},
        "ocr": {"enabled": True, "modelName": "PP-OCRv5_mobile", "minDetectionScore": 0.5,
                "minRecognitionScore": 0.8, "maxResolution": 736, **(ml.get("ocr") or {})},
    }


def ml_entries(queue: str, settings: dict) -> tuple[dict, str]:
    """The `entries` of a job's POST /predict (machine-learning.repository.ts) and the response key it reads."""
    if queue == "smartSearch":
        return {"clip": {"visual": {"modelName": settings["clip"]["modelName"]}}}, "clip"
    if queue == "faceDetection":
        face = settings["facialRecognition"]
        return {"facial-recognition": {"detection": {"modelName": face["modelName"],
                                                     "options": {"minScore": face["minScore"]}},
                                       "recognition": {"modelName": face["modelName"]}}}, "facial-recognition"
    ocr = settings["ocr"]
    return {"ocr": {"detection": {"modelName": ocr["modelName"],
                                  "options": {"minScore": ocr["minDetectionScore"],
                                              "maxResolution": ocr["maxResolution"]}},
                    "recognition": {"modelName": ocr["modelName"],
                                    "options": {"minScore": ocr["minRecognitionScore"]}}}}, "ocr"


class MachineLearning:
    """Immich's MachineLearningRepository: availability checks and the URL loop of predict.

    With checks on, a background thread pings ``<url>ping`` (v3: relative to the URL, so a path is kept when the
    URL ends with a slash) for every URL at start and then every ``interval``; healthy = 2xx within ``timeout``.
    Until a URL's first check has answered it counts as unhealthy (Immich's healthyMap starts empty). predict tries
    the healthy URLs in config order, then the unhealthy ones; a 2xx marks that URL healthy, a non-2xx or a network
    error marks it unhealthy and the next URL is tried (both as Immich's setHealthy does); all failing raises.
    Checks off: every URL is healthy and nothing is pinged. No ping before a predict."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.healthy: dict[str, bool] = {}
        self.pings: dict[str, int] = dict.fromkeys(settings["urls"], 0)
        self.stop = threading.Event()

    def start(self) -> None:
        if self.settings["enabled"] and self.settings["checks"]:
            threading.Thread(target=self.check_loop, name="ml-availability", daemon=True).start()

    def check_loop(self) -> None:
        while not self.stop.is_set():
            for url in self.settings["urls"]:  # Immich's tick: every URL at once, none waits for another
                threading.Thread(target=self.check, args=(url,), name="ml-ping", daemon=True).start()
            self.stop.wait(self.settings["interval"])

    def check(self, url: str) -> None:
        healthy = False
        with self.lock:
            self.pings[url] += 1
        try:
            with urllib.request.urlopen(urljoin(url, "ping"), timeout=self.settings["timeout"]) as response:
                healthy = 200 <= response.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            pass
        self.set_healthy(url, healthy)

    def set_healthy(self, url: str, healthy: bool) -> None:
        with self.lock:
            if self.healthy.get(url) is not healthy:
                log(f"Machine learning server became {'healthy' if healthy else 'unhealthy'} ({url}).")
            self.healthy[url] = healthy

    def is_healthy(self, url: str) -> bool:
        if not self.settings["checks"]:
            return True
        with self.lock:
            return self.healthy.get(url, False)

    def state(self) -> dict:
        with self.lock:
            return {"enabled": self.settings["enabled"], "availabilityChecks": self.settings["checks"],
                    "urls": [{"url": url, "healthy": self.settings["checks"] is False or self.healthy.get(url, False),
                              "pings": self.pings[url]} for url in self.settings["urls"]]}

    def predict(self, entries: dict, payload: dict[str, bytes | str], expect: str, about: dict) -> tuple[str, dict]:
        """POST <url>predict (multipart: entries + image or text) through the URL loop; (url, answer)."""
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n'
                f"{json.dumps(entries)}\r\n").encode()
        for name, value in payload.items():
            if isinstance(value, bytes):
                body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="blob"\r\n'
                         "Content-Type: application/octet-stream\r\n\r\n").encode() + value + b"\r\n"
            else:
                body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        body += f"--{boundary}--\r\n".encode()
        urls = self.settings["urls"]
        healthy = [url for url in urls if self.is_healthy(url)]
        for url in healthy + [url for url in urls if url not in healthy]:
            attempt = {**about, "url": url, "healthy": url in healthy}
            ML_ATTEMPTS.append(attempt)
            request = urllib.request.Request(urljoin(url, "predict"), data=body, method="POST",
                                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:  # undici's default, no other
                    result = json.loads(response.read())
                attempt["status"] = response.status
                attempt["embedding"] = expect in result
                self.set_healthy(url, True)
                return url, result
            except urllib.error.HTTPError as error:
                attempt["status"] = error.code
                attempt["error"] = f"status {error.code}"
            except (urllib.error.URLError, OSError, ValueError) as error:
                attempt["error"] = str(error)
            log(f"Machine learning request to \"{url}\" failed: {attempt['error']}")
            self.set_healthy(url, False)
        raise MachineLearningError(f"Machine learning request '{json.dumps(entries)}' failed for all URLs")


class Queue:
    """One BullMQ queue as Immich reads it (counts, paused flag); jobs are asset ids."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.paused = False
        self.waiting: list[str] = []
        self.active: list[str] = []
        self.completed = self.failed = 0

    def dto(self) -> dict:
        """QueueResponseDto."""
        return {"name": self.name, "isPaused": self.paused, "statistics": {
            "active": len(self.active), "completed": self.completed, "failed": self.failed, "delayed": 0,
            "waiting": 0 if self.paused else len(self.waiting), "paused": len(self.waiting) if self.paused else 0}}


class JobQueues:
    """Immich's job queues, the three ML ones with workers (concurrency as Immich's defaults).

    IN MEMORY ONLY: a restart of the double loses every queued job and every pause (real Immich keeps them in
    Valkey, where a pause survives a server restart). The results of finished ML jobs are in the database
    (ml_results), so a "missing" run after a restart finds what is missing, as Immich does. A failed job is not
    retried (BullMQ attempts 1); only a later "missing" run queues that asset again."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.ml = MachineLearning(ml_settings(api.config))
        self.cond = threading.Condition()
        self.queues = {name: Queue(name) for name in QUEUE_NAMES}

    def start(self) -> None:
        self.ml.start()
        for name, concurrency in ML_CONCURRENCY.items():
            for number in range(concurrency):
                threading.Thread(target=self.work, args=(name,), name=f"{name}-{number}", daemon=True).start()

    def feature_enabled(self, queue: str) -> bool:
        settings = self.ml.settings
        return settings["enabled"] and settings[ML_FEATURE[queue]].get("enabled", True) is not False

    def enqueue(self, queue: str, asset_ids: list[str]) -> None:
        with self.cond:
            self.queues[queue].waiting.extend(asset_ids)
            self.cond.notify_all()

    def asset_uploaded(self, asset_id: str) -> None:
        """The ML jobs an upload queues (each only when its feature is on)."""
        for queue in ML_CONCURRENCY:
            if self.feature_enabled(queue):
                self.enqueue(queue, [asset_id])

    def dto(self, name: str) -> dict:
        with self.cond:
            return self.queues[name].dto()

    def set_paused(self, name: str, paused: bool) -> dict:
        if paused and name == "backgroundTask":
            raise BadRequest("The BackgroundTask queue cannot be paused")
        with self.cond:
            self.queues[name].paused = paused
            self.cond.notify_all()
            return self.queues[name].dto()

    def command(self, name: str, command: str, force: bool) -> None:
        """PUT /jobs/{name}: start (queue the missing assets, or all with force), pause, resume, empty,
        clear-failed. A start while the queue has active jobs is refused ("Job is already running")."""
        queue = self.queues[name]
        if command in ("pause", "resume"):
            self.set_paused(name, command == "pause")
        elif command == "empty":
            with self.cond:
                queue.waiting.clear()
        elif command == "clear-failed":
            with self.cond:
                queue.failed = 0
        elif command == "start":
            with self.cond:
                if queue.active:
                    raise BadRequest("Job is already running")
            if name not in STARTABLE:
                raise BadRequest(f"Invalid job name: {name}")
            if name not in ML_CONCURRENCY or not self.feature_enabled(name):
                return
            if force:
                rows = self.api.query("SELECT id::text FROM assets ORDER BY id")
            else:
                rows = self.api.query(
                    "SELECT id::text FROM assets WHERE id NOT IN (SELECT asset_id FROM ml_results WHERE queue = %s)"
                    " ORDER BY id", (name,))
            with self.cond:
                queued = set(queue.waiting) | set(queue.active)
                queue.waiting.extend(row[0] for row in rows if force or row[0] not in queued)
                self.cond.notify_all()

    def work(self, name: str) -> None:
        queue = self.queues[name]
        while True:
            with self.cond:
                while queue.paused or not queue.waiting:
                    self.cond.wait()
                asset_id = queue.waiting.pop(0)
                queue.active.append(asset_id)
            try:
                self.run(name, asset_id)
                outcome = "completed"
            except (MachineLearningError, OSError, psycopg2.Error, ValueError) as error:
                log(f"Unable to run job handler ({name}) for asset {asset_id}: {error}")
                outcome = "failed"
            with self.cond:
                queue.active.remove(asset_id)
                setattr(queue, outcome, getattr(queue, outcome) + 1)
                self.cond.notify_all()

    def run(self, name: str, asset_id: str) -> None:
        rows = self.api.query("SELECT original_path FROM assets WHERE id = %s", (asset_id,))
        if not rows:
            return  # deleted meanwhile: Immich skips the job
        entries, expect = ml_entries(name, self.ml.settings)
        data = Path(rows[0][0]).read_bytes()  # Immich sends the preview; the double has only the original
        url, result = self.ml.predict(entries, {"image": data}, expect, {"asset": asset_id, "queue": name})
        self.api.query(
            "INSERT INTO ml_results (asset_id, queue, url) VALUES (%s, %s, %s) ON CONFLICT (asset_id, queue)"
            " DO UPDATE SET url = excluded.url, created_at = now()", (asset_id, name, url))
        if name == "smartSearch":
            self.api.query("UPDATE assets SET ml_url = %s WHERE id = %s", (url, asset_id))
        log(f"ML: {asset_id} {name} from {url}")

    def results(self) -> dict:
        """GET /_double/ml/embeddings: per asset, the queues with a result and the URL that gave it."""
        assets: dict[str, dict] = {row[0]: {} for row in self.api.query("SELECT id::text FROM assets ORDER BY id")}
        for asset_id, queue, url in self.api.query("SELECT asset_id::text, queue, url FROM ml_results"):
            assets.setdefault(asset_id, {})[queue] = url
        missing = {queue: sum(1 for found in assets.values() if queue not in found)
                   for queue in ML_CONCURRENCY if self.feature_enabled(queue)}
        return {"assets": assets, "missing": missing}


class BadRequest(Exception):
    """A request Immich refuses with 400 (validation, multer, body-parser)."""


class Truncated(Exception):
    """The client went away before the end of the body (busboy's "Unexpected end of form")."""


class BodyReader:
    """The request body, Content-Length or chunked, read in pieces; a short body raises Truncated."""

    def __init__(self, rfile, headers) -> None:
        self.rfile = rfile
        self.chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
        try:
            self.remaining = 0 if self.chunked else int(headers.get("Content-Length") or 0)
        except ValueError:
            self.remaining = 0
        self.chunk_left, self.done = 0, False

    def _read(self, size: int) -> bytes:
        try:
            data = self.rfile.read(size)
        except OSError as error:  # reset by the peer, or the socket timeout
            raise Truncated(str(error)) from error
        if len(data) < size:
            raise Truncated("the connection closed before the end of the body")
        return data

    def _line(self) -> bytes:
        try:
            line = self.rfile.readline(1024)
        except OSError as error:
            raise Truncated(str(error)) from error
        if not line.endswith(b"\n"):
            raise Truncated("the connection closed inside a chunk header")
        return line

    def read(self, size: int = CHUNK) -> bytes:
        if self.done:
            return b""
        if not self.chunked:
            if self.remaining <= 0:
                self.done = True
                return b""
            data = self._read(min(size, self.remaining))
            self.remaining -= len(data)
            return data
        if self.chunk_left == 0:
            try:
                length = int(self._line().split(b";")[0].strip(), 16)
            except ValueError as error:
                self.done = True
                raise BadRequest("malformed chunked body") from error
            if length == 0:
                while self._line().strip():  # trailers
                    pass
                self.done = True
                return b""
            self.chunk_left = length
        data = self._read(min(size, self.chunk_left))
        self.chunk_left -= len(data)
        if self.chunk_left == 0 and self._line().strip():
            raise BadRequest("malformed chunked body")
        return data

    def read_all(self, limit: int) -> bytes:
        parts, size = [], 0
        while chunk := self.read():
            size += len(chunk)
            if size > limit:
                raise BadRequest("request entity too large")
            parts.append(chunk)
        return b"".join(parts)

    def drain(self) -> None:
        while self.read():
            pass


class Part:
    def __init__(self, form: Multipart, raw_headers: bytes) -> None:
        headers = BytesHeaderParser(policy=HTTP).parsebytes(raw_headers.strip(b"\r\n") + b"\r\n\r\n")
        self.form = form
        self.name = headers.get_param("name", header="content-disposition")
        self.filename = headers.get_filename()
        self.done = False

    def chunks(self):
        """The part's content in pieces, up to the next boundary."""
        form = self.form
        while not self.done:
            found = form.buffer.find(form.delimiter)
            if found >= 0:
                data, form.buffer = form.buffer[:found], form.buffer[found + len(form.delimiter) :]
                self.done = True
                if data:
                    yield data
                return
            safe = len(form.buffer) - len(form.delimiter) + 1
            if safe > 0:
                yield form.buffer[:safe]
                form.buffer = form.buffer[safe:]
            if not form.fill():
                raise Truncated("the body ended inside a part")

    def text(self) -> str:
        data = b""
        for chunk in self.chunks():
            data += chunk
            if len(data) > FIELD_LIMIT:
                raise BadRequest(f"Field value too long: {self.name}")
        return data.decode("utf-8", "replace")


class Multipart:
    """A streaming multipart/form-data reader (what busboy does for multer): parts one after the other."""

    def __init__(self, reader: BodyReader, boundary: str) -> None:
        self.reader = reader
        self.delimiter = b"\r\n--" + boundary.encode()
        self.buffer = b"\r\n"  # the first boundary has no CRLF before it

    def fill(self) -> bool:
        data = self.reader.read()
        self.buffer += data
        return bool(data)

    def parts(self):
        while (found := self.buffer.find(self.delimiter)) < 0:
            self.buffer = self.buffer[-len(self.delimiter) :]
            if not self.fill():
                raise BadRequest("Multipart: Boundary not found")
        self.buffer = self.buffer[found + len(self.delimiter) :]
        while True:
            while len(self.buffer) < 2:
                if not self.fill():
                    raise Truncated("Unexpected end of form")
            if self.buffer.startswith(b"--"):
                self.reader.drain()  # the epilogue
                return
            while (end := self.buffer.find(b"\r\n\r\n")) < 0:
                if len(self.buffer) > 16 * 1024:
                    raise BadRequest("Malformed part header")
                if not self.fill():
                    raise Truncated("Unexpected end of form")
            raw, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            part = Part(self, raw)
            yield part
            for _ in part.chunks():  # whatever the caller left unread
                pass


def injected_fault() -> tuple[int, str] | None:
    """IMMICH_DOUBLE_TEST_FAIL_UPLOAD_WRITE=<ERRNO>:<bytes>|rename (tests only): where an upload's write fails."""
    setting = os.environ.get("IMMICH_DOUBLE_TEST_FAIL_UPLOAD_WRITE", "")
    if not setting:
        return None
    name, _, where = setting.partition(":")
    return getattr(errno, name), where or "0"


def rename(source: Path, target: Path) -> None:
    fault = injected_fault()
    if fault and fault[1] == "rename":
        raise OSError(fault[0], os.strerror(fault[0]), str(source))
    os.rename(source, target)


PENDING_REMOVALS: set[Path] = set()
PENDING_LOCK = threading.Lock()


def remove_files(paths) -> None:
    """Remove what a failed upload left; what cannot be removed now (a dead mount) is retried later."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            log(f"could not remove {path} ({error}); retrying every 10 s")
            with PENDING_LOCK:
                PENDING_REMOVALS.add(path)


# The double's own temporary upload files (Immich itself streams to the final name: multer's disk storage).
TEMPORARY = re.compile(r"\A\.[0-9a-f-]{36}\.(assetData|sidecarData)\.tmp\Z")


def sweep_temporaries() -> None:
    """At start: remove the temporary upload files a previous run could not (the process was stopped while a
    removal waited for a dead mount: the mount's healer restarts the stack). Only the double makes these files,
    so only the double may leave them; a real Immich in that spot leaves the final file, an untracked file."""
    for path in (MEDIA / "upload").rglob(".*.tmp"):
        if TEMPORARY.match(path.name):
            remove_files([path])
            log(f"removed {path}, left by an earlier run")


def retry_removals() -> None:
    sweep_temporaries()
    while True:
        time.sleep(10)
        with PENDING_LOCK:
            pending = list(PENDING_REMOVALS)
        for path in pending:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                continue
            log(f"removed {path}")
            with PENDING_LOCK:
                PENDING_REMOVALS.discard(path)


def iso_date(value: str | None, name: str) -> str:
    """Immich's @ValidateDate: a date the server can parse, answered back as ISO 8601 UTC."""
    if not value:
        raise BadRequest(f"{name} must be a Date instance")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as error:
        raise BadRequest(f"{name} must be a Date instance") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_checksum(value: str) -> str | None:
    """Immich's fromChecksum: a SHA-1 as 40 hex digits or base64; answered as hex here (None if neither)."""
    value = (value or "").strip()
    if re.fullmatch(r"[0-9a-fA-F]{40}", value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 20 else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "immich-double"
    timeout = 300  # Node's requestTimeout: a client that stalls mid-body is cut off, as by a disconnect
    api: Api
    trusted: list[Network] = trusted_proxies(None)

    def client_ip(self) -> str:
        """req.ip: the client's address as Immich sees it (the trusted proxies' X-Forwarded-For, else the peer)."""
        headers = getattr(self, "headers", None)
        forwarded = ", ".join(headers.get_all("X-Forwarded-For") or []) if headers is not None else ""
        return client_address(self.client_address[0], forwarded, self.trusted)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log(f"{self.client_ip()} (peer {self.client_address[0]}) {format % args}")

    def send(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the client is gone
            self.close_connection = True

    def error(self, status: int, message: str) -> None:
        self.correlation_id = uuid.uuid4().hex
        self.send(status, {"message": message, "statusCode": status, "correlationId": self.correlation_id})

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.send_header("X-Correlation-ID", self.__dict__.pop("correlation_id", None) or uuid.uuid4().hex)

    def reader(self) -> BodyReader:
        return BodyReader(self.rfile, self.headers)

    def skip_body(self) -> None:
        """Read a body nobody wants, so that the connection can serve the next request; else close it."""
        try:
            self.reader().drain()
        except (Truncated, BadRequest):
            self.close_connection = True

    def json_body(self) -> dict:
        """Express's body parser, then the DTO: JSON that is not an object is a 400; unknown keys are ignored."""
        try:
            raw = self.reader().read_all(JSON_LIMIT)
        except Truncated as error:
            self.close_connection = True
            raise BadRequest("request aborted") from error
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise BadRequest(f"Unexpected token in JSON: {error}") from error
        if not isinstance(value, dict):
            raise BadRequest("The request body must be a JSON object")
        return value

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
        self.answer_database_errors(self.get)

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self.answer_database_errors(self.post)

    def do_PUT(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self.answer_database_errors(self.put)

    def do_DELETE(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self.answer_database_errors(self.delete)

    def delete(self) -> None:
        """DELETE /api/api-keys/{id} as APIKeyService.delete: 204, or 400 "API Key not found" for a key that is not
        one of the user's (already deleted, another user's); the id must be a UUID (400 otherwise)."""
        path = self.path.split("?")[0]
        self.skip_body()
        user_id = self.authenticated_user()
        if user_id is None:
            return self.error(401, "Authentication required")
        match = re.fullmatch(r"/api/api-keys/([^/]+)", path)
        if not match:
            return self.error(404, f"Cannot DELETE {path}")
        if not re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", match[1]):
            return self.error(400, "id must be a UUID")
        deleted = self.api.query("DELETE FROM tokens WHERE id = %s AND user_id = %s AND kind = 'api-key' RETURNING id",
                                 (match[1], user_id))
        if not deleted:
            return self.error(400, "API Key not found")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def is_admin(self, user_id: str) -> bool:
        return bool(self.api.query("SELECT 1 FROM users WHERE id = %s AND is_admin", (user_id,)))

    @staticmethod
    def queue_name(path: str) -> str | None:
        """The QueueName at the end of /api/queues/{name} or /api/jobs/{name}; None if Immich knows no such queue."""
        name = urllib.parse.unquote(path.rsplit("/", 1)[1])
        return name if name in QUEUE_NAMES else None

    def put(self) -> None:
        """PUT /api/queues/{name} {isPaused} (QueueUpdateDto -> QueueResponseDto) and the legacy
        PUT /api/jobs/{name} {command, force} (QueueCommandDto -> QueueResponseLegacyDto), admin only."""
        path = self.path.split("?")[0]
        try:
            user_id = self.authenticated_user()
            if user_id is None:
                self.skip_body()
                return self.error(401, "Authentication required")
            if not re.fullmatch(r"/api/(queues|jobs)/[^/]+", path):
                self.skip_body()
                return self.error(404, f"Cannot PUT {path}")
            dto = self.json_body()
            if not self.is_admin(user_id):
                return self.error(403, "Forbidden")
            name = self.queue_name(path)
            if name is None:
                return self.error(400, "Invalid queue name")
            if path.startswith("/api/queues/"):
                paused = dto.get("isPaused")
                if paused is not None and not isinstance(paused, bool):
                    return self.error(400, "isPaused must be a boolean value")
                if paused is None:
                    return self.send(200, self.api.jobs.dto(name))
                answer = self.api.jobs.set_paused(name, paused)
                log(f"queue {name} {'paused' if paused else 'resumed'}")
                return self.send(200, answer)
            command, force = dto.get("command"), dto.get("force", False)
            if command not in QUEUE_COMMANDS:
                return self.error(400, f"command must be one of: {', '.join(QUEUE_COMMANDS)}")
            if not isinstance(force, bool):
                return self.error(400, "force must be a boolean value")
            self.api.jobs.command(name, command, force)
            state = self.api.jobs.dto(name)
            return self.send(200, {"jobCounts": state["statistics"],
                                   "queueStatus": {"isActive": state["statistics"]["active"] > 0,
                                                   "isPaused": state["isPaused"]}})
        except BadRequest as error:
            return self.error(400, str(error))

    def answer_database_errors(self, handler) -> None:
        """Immich's global exception filter: a database error is a 500 (the next request connects again)."""
        try:
            handler()
        except psycopg2.Error as error:
            log(f"{self.command} {self.path.split('?')[0]} failed: {error}")
            self.close_connection = True
            self.error(500, "Internal server error")

    def get(self) -> None:
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
        if path == "/_double/ml/embeddings":
            return self.send(200, self.api.jobs.results())
        if path == "/_double/ml/health":
            return self.send(200, self.api.jobs.ml.state())
        user_id = self.authenticated_user()
        if user_id is None:
            return self.error(401, "Authentication required")
        if path == "/api/queues" or path.startswith("/api/queues/"):
            if not self.is_admin(user_id):
                return self.error(403, "Forbidden")
            if path == "/api/queues":
                return self.send(200, [self.api.jobs.dto(name) for name in QUEUE_NAMES])
            name = self.queue_name(path)
            return self.send(200, self.api.jobs.dto(name)) if name else self.error(400, "Invalid queue name")
        if path == "/api/users/me":
            return self.send(200, self.api.user(user_id))
        if path == "/api/api-keys/me":
            return self.send(
                200, {"id": str(uuid.uuid4()), "name": "cli", "permissions": ["all"], "createdAt": "", "updatedAt": ""}
            )
        if match := re.fullmatch(r"/api/assets/([0-9a-fA-F-]{36})(/original)?", path):
            return self.get_asset(user_id, match.group(1), original=bool(match.group(2)))
        return self.error(404, f"Cannot GET {path}")

    def post(self) -> None:
        path = self.path.split("?")[0]
        try:
            if path == "/api/auth/admin-sign-up":
                return self.admin_sign_up(self.json_body())
            if path == "/api/auth/login":
                return self.login(self.json_body())
            user_id = self.authenticated_user()
            if user_id is None:
                self.skip_body()
                return self.error(401, "Authentication required")
            if path == "/api/auth/logout":
                return self.logout()
            if path == "/api/api-keys":
                return self.create_api_key(user_id, self.json_body())
            if path == "/api/assets/bulk-upload-check":
                return self.bulk_upload_check(user_id, self.json_body())
            if path == "/api/search/metadata":
                return self.search_metadata(user_id, self.json_body())
            if path == "/api/search/smart":
                return self.search_smart(self.json_body())
            if path == "/api/assets":
                return self.upload(user_id)
            self.skip_body()
            return self.error(404, f"Cannot POST {path}")
        except BadRequest as error:
            return self.error(400, str(error))

    def logout(self) -> None:
        # As Immich's AuthController.logout: 200, the session (not an API key) is deleted.
        self.skip_body()
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            self.api.query("DELETE FROM tokens WHERE token = %s AND kind = 'session'",
                           (hashlib.sha256(authorization[7:].encode()).hexdigest(),))
        self.send(200, {"successful": True, "redirectUri": "/auth/login?autoLaunch=0"})

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
        if not all(isinstance(dto.get(key), str) and dto[key] for key in ("email", "password")):
            return self.error(400, "email and password are required")
        rows = self.api.query(
            "SELECT id, name, is_admin FROM users WHERE email = %s AND password_sha256 = %s",
            (dto["email"].lower(), hashlib.sha256(dto["password"].encode()).hexdigest()),
        )
        if not rows:
            # AuthService.login's warning (the e-mail as the DTO lowercased it), in the request's context.
            context = f"Api:AuthService~{self.headers.get('x-immich-cid') or correlation_id()}"
            message = f"Failed login attempt for user {dto['email'].lower()} from ip address {self.client_ip()}"
            print(nest_line("WARN", context, message), flush=True)
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
        # APIKeyCreateDto: permissions (required, at least one), name (optional).
        permissions = dto.get("permissions")
        if not (isinstance(permissions, list) and permissions and all(isinstance(p, str) for p in permissions)):
            return self.error(400, "permissions must be a non-empty array of permissions")
        if not isinstance(dto.get("name", ""), str):
            return self.error(400, "name must be a string")
        # As Immich makes them (its crypto repository's randomBytesAsText: base64 of 32 random bytes without the
        # non-word characters): letters and digits only. A urlsafe token may start with "-", which a CLI reads as
        # an option (`immich login <url> -abc…` failed once in 64 runs of the lab).
        secret = re.sub(r"\W", "", base64.b64encode(secrets.token_bytes(32)).decode())
        key_id = str(uuid.uuid4())
        name = dto.get("name") or "API Key"
        self.api.query(
            "INSERT INTO tokens (token, user_id, kind, id, name) VALUES (%s, %s, 'api-key', %s, %s)",
            (hashlib.sha256(secret.encode()).hexdigest(), user_id, key_id, name),
        )
        key = {"id": key_id, "name": name, "permissions": permissions, "createdAt": "", "updatedAt": ""}
        self.send(201, {**key, "apiKey": key, "secret": secret})

    def bulk_upload_check(self, user_id: str, dto: dict) -> None:
        assets = dto.get("assets")
        if not isinstance(assets, list) or not all(
            isinstance(asset, dict) and isinstance(asset.get("id"), str) and isinstance(asset.get("checksum"), str)
            for asset in assets
        ):
            return self.error(400, "assets must be an array of {id, checksum}")
        results = []
        for asset in assets:
            rows = self.api.query(
                "SELECT id FROM assets WHERE owner_id = %s AND checksum = %s",
                (user_id, from_checksum(asset["checksum"]) or ""),
            )
            if rows:
                results.append(
                    {
                        "id": asset["id"],
                        "action": "reject",
                        "reason": "duplicate",
                        "assetId": str(rows[0][0]),
                        "isTrashed": False,
                    }
                )
            else:
                results.append({"id": asset["id"], "action": "accept"})
        self.send(200, {"results": results})

    ASSET_COLUMNS = (
        "id, owner_id, checksum, original_path, original_file_name, file_created_at, file_modified_at,"
        " is_favorite, visibility, duration, updated_at"
    )

    def asset_dto(self, row: tuple) -> dict:
        """Immich's AssetResponseDto (the fields a client reads; no deviceId/deviceAssetId since v3)."""
        (asset_id, owner_id, checksum, path, name, created, modified, favorite, visibility, duration, updated) = row
        kind = "VIDEO" if Path(path).suffix.lower() in VIDEO_TYPES else "IMAGE"
        return {
            "id": str(asset_id),
            "ownerId": str(owner_id),
            "type": kind,
            "checksum": base64.b64encode(bytes.fromhex(checksum)).decode(),
            "originalPath": path,
            "originalFileName": name or Path(path).name,
            "originalMimeType": "application/octet-stream",
            "fileCreatedAt": created,
            "fileModifiedAt": modified or created,
            "localDateTime": created,
            "updatedAt": updated.isoformat(),
            "isFavorite": favorite,
            "isArchived": visibility == "archive",
            "isTrashed": False,
            "isOffline": False,
            "visibility": visibility,
            "duration": duration or "0:00:00.00000",
            "hasMetadata": False,
            "resized": True,
            "thumbhash": None,
            "people": [],
            "livePhotoVideoId": None,
            "duplicateId": None,
        }

    def get_asset(self, user_id: str, asset_id: str, original: bool) -> None:
        rows = self.api.query(
            f"SELECT {self.ASSET_COLUMNS} FROM assets WHERE owner_id = %s AND id = %s",  # noqa: S608 - constant
            (user_id, asset_id),
        )
        if not rows:
            return self.error(400, "Not found or no asset.read access")
        if not original:
            return self.send(200, self.asset_dto(rows[0]))
        data = Path(rows[0][3]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def search_metadata(self, user_id: str, dto: dict) -> None:
        """POST /search/metadata (MetadataSearchDto): the filters the double knows, newest first, paged."""
        page, size = dto.get("page", 1), dto.get("size", 250)
        if not (isinstance(page, int) and page >= 1 and isinstance(size, int) and 1 <= size <= 1000):
            return self.error(400, "page must be >= 1, size between 1 and 1000")
        where, args = ["owner_id = %s"], [user_id]
        if isinstance(dto.get("isFavorite"), bool):
            where.append("is_favorite = %s")
            args.append(dto["isFavorite"])
        if isinstance(dto.get("visibility"), str):
            where.append("visibility = %s")
            args.append(dto["visibility"])
        if isinstance(dto.get("id"), str):
            where.append("id::text = %s")
            args.append(dto["id"])
        if isinstance(dto.get("checksum"), str):
            where.append("checksum = %s")
            args.append(from_checksum(dto["checksum"]) or "")
        if isinstance(dto.get("originalFileName"), str):
            where.append("original_file_name ILIKE %s")
            args.append(f"%{dto['originalFileName']}%")
        rows = self.api.query(
            f"SELECT {self.ASSET_COLUMNS} FROM assets WHERE {' AND '.join(where)}"  # noqa: S608 - fixed clauses
            " ORDER BY file_created_at DESC, id LIMIT %s OFFSET %s",
            (*args, size + 1, (page - 1) * size),
        )
        items = [self.asset_dto(row) for row in rows[:size]]
        self.send(
            200,
            {
                "albums": {"total": 0, "count": 0, "items": [], "facets": []},
                "assets": {
                    "total": len(items),
                    "count": len(items),
                    "items": items,
                    "facets": [],
                    "nextPage": str(page + 1) if len(rows) > size else None,
                },
            },
        )

    def search_smart(self, dto: dict) -> None:
        """POST /search/smart (SmartSearchDto): the query's CLIP textual embedding through the URL loop (healthy
        first), then an empty result (the double keeps no vectors to compare with)."""
        settings = self.api.jobs.ml.settings
        if not (settings["enabled"] and settings["clip"].get("enabled", True) is not False):
            return self.error(400, "Smart search is not enabled")
        query = dto.get("query")
        if not isinstance(query, str) or not query:
            return self.error(400, "query must be a non-empty string")
        options = {"language": dto["language"]} if isinstance(dto.get("language"), str) else {}
        entries = {"clip": {"textual": {"modelName": settings["clip"]["modelName"], "options": options}}}
        try:
            url, _ = self.api.jobs.ml.predict(entries, {"text": query}, "clip", {"query": query, "queue": None})
        except MachineLearningError as error:
            log(f"smart search failed: {error}")
            return self.error(500, "Failed to search")
        log(f"ML: text search answered by {url}")
        empty = {"total": 0, "count": 0, "items": [], "facets": []}
        self.send(200, {"albums": empty, "assets": {**empty, "nextPage": None, "nextCursor": None}})

    def duplicate_of(self, user_id: str, checksum: str) -> str | None:
        rows = self.api.query("SELECT id FROM assets WHERE owner_id = %s AND checksum = %s", (user_id, checksum))
        return str(rows[0][0]) if rows else None

    def upload(self, user_id: str) -> None:
        """POST /assets as Immich takes it: stream to a temporary file, rename into place, then the row."""
        # AssetUploadInterceptor: a known checksum in the header answers before the body is looked at.
        header = from_checksum(self.headers.get("x-immich-checksum", ""))
        if header and (existing := self.duplicate_of(user_id, header)):
            self.skip_body()
            return self.send(200, {"id": existing, "status": "duplicate"})
        content_type = self.headers.get_content_type()
        boundary = self.headers.get_param("boundary")
        if content_type != "multipart/form-data" or not boundary:
            self.skip_body()
            return self.error(400, "assetData, fileCreatedAt and fileModifiedAt are required (multipart/form-data)")
        asset_id = str(uuid.uuid4())
        folder = MEDIA / "upload" / user_id / asset_id[:2] / asset_id[2:4]
        left: list[Path] = []  # every file this upload made, removed unless the row is committed
        try:
            fields, files = self.receive(Multipart(self.reader(), boundary), folder, asset_id, left)
            created = iso_date(fields.get("fileCreatedAt"), "fileCreatedAt")
            modified = iso_date(fields.get("fileModifiedAt"), "fileModifiedAt")
            if "assetData" not in files:
                raise BadRequest("assetData is required")
            if fields.get("isFavorite", "false") not in ("true", "false"):
                raise BadRequest("isFavorite must be a boolean value")
            if fields.get("visibility", "timeline") not in VISIBILITIES:
                raise BadRequest(f"visibility must be one of: {', '.join(VISIBILITIES)}")
            name, temp, checksum, size = files["assetData"]
            original_name = fields.get("filename") or name or ""
            extension = Path(original_name).suffix.lower()
            if extension not in IMAGE_TYPES + VIDEO_TYPES:  # canUploadFile
                raise BadRequest(f"Unsupported file type {original_name}")
            original = folder / f"{asset_id}{extension}"
            rename(temp, original)
            left.append(original)
            sidecar = None
            if "sidecarData" in files:
                sidecar = folder / f"{asset_id}.xmp"
                rename(files["sidecarData"][1], sidecar)
                left.append(sidecar)
            try:
                self.api.query(
                    "INSERT INTO assets (id, owner_id, checksum, original_path, original_file_name, file_created_at,"
                    " file_modified_at, is_favorite, visibility, duration, sidecar_path, size)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        asset_id,
                        user_id,
                        checksum,
                        str(original),
                        Path(original_name).name,
                        created,
                        modified,
                        fields.get("isFavorite") == "true",
                        fields.get("visibility", "timeline"),
                        fields.get("duration") or None,
                        str(sidecar) if sidecar else None,
                        size,
                    ),
                )
            except psycopg2.errors.UniqueViolation:
                # handleUploadError: the new file goes, the answer is a success naming the asset already there.
                remove_files(left)
                left.clear()
                return self.send(200, {"id": self.duplicate_of(user_id, checksum), "status": "duplicate"})
            left.clear()  # committed: the asset is the file and its row
        except BadRequest as error:
            remove_files(left)
            self.close_connection = True
            return self.error(400, str(error))
        except Truncated as error:
            remove_files(left)
            self.close_connection = True
            log(f"upload {asset_id} aborted: {error}")
            return self.error(500, "Internal server error")
        except (OSError, psycopg2.Error) as error:
            remove_files(left)
            self.close_connection = True
            log(f"upload {asset_id} failed: {error}")
            return self.error(500, "Internal server error")
        try:
            self.derived_files(asset_id, user_id, original)
        except psycopg2.Error as error:
            log(f"jobs of {asset_id} failed: {error}")
        self.send(201, {"id": asset_id, "status": "created"})

    def receive(self, form: Multipart, folder: Path, asset_id: str, left: list[Path]) -> tuple[dict, dict]:
        """The parts of the form: text fields (all kept, only the known ones read) and the files, spooled."""
        fields: dict[str, str] = {}
        files: dict[str, tuple[str | None, Path, str, int]] = {}
        for part in form.parts():
            if part.filename is None:
                fields[part.name] = part.text()
                continue
            if part.name not in ("assetData", "sidecarData") or part.name in files:
                raise BadRequest(f"Unexpected field: {part.name}")  # multer's LIMIT_UNEXPECTED_FILE
            files[part.name] = (part.filename, *self.spool(part, folder, f".{asset_id}.{part.name}.tmp", left))
        return fields, files

    def spool(self, part: Part, folder: Path, name: str, left: list[Path]) -> tuple[Path, str, int]:
        """Write a file part to <folder>/<name> as it arrives, SHA-1 on the way, flushed to disk."""
        fault = injected_fault()
        limit = int(fault[1]) if fault and fault[1].isdigit() else None
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / name
        left.append(temp)
        digest = hashlib.sha1()  # noqa: S324 - Immich identifies assets by SHA-1
        size = 0
        with open(temp, "xb") as file:
            for chunk in part.chunks():
                digest.update(chunk)
                if fault and limit is not None and size + len(chunk) > limit:
                    file.write(chunk[: max(limit - size, 0)])
                    file.flush()
                    raise OSError(fault[0], os.strerror(fault[0]), str(temp))
                file.write(chunk)
                size += len(chunk)
            file.flush()
            try:
                os.fsync(file.fileno())
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.ENOSYS):
                    raise
        return temp, digest.hexdigest(), size

    def derived_files(self, asset_id: str, user_id: str, original: Path) -> None:
        """The jobs Immich runs after an upload: the thumbnail here, then the ML jobs queued (smartSearch,
        faceDetection, ocr; run by the queues' workers). A failure there keeps the asset."""
        shard = Path(user_id) / asset_id[:2] / asset_id[2:4]
        thumbnail = MEDIA / "thumbs" / shard / f"{asset_id}-thumbnail.webp"
        try:
            data = original.read_bytes()
            thumbnail.parent.mkdir(parents=True, exist_ok=True)
            temp = thumbnail.with_name(f".{thumbnail.name}.tmp")
            temp.write_bytes(b"immich-double thumbnail of " + base64.b64encode(hashlib.sha256(data).digest()))
            os.rename(temp, thumbnail)
        except OSError as error:
            log(f"thumbnail of {asset_id} failed: {error}")
            return
        self.api.query("UPDATE assets SET thumbnail_path = %s, updated_at = now() WHERE id = %s",
                       (str(thumbnail), asset_id))
        self.api.jobs.asset_uploaded(asset_id)


class MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics in Prometheus' text format, as Immich serves it with IMMICH_TELEMETRY_INCLUDE=all. The DOUBLE's
    series are its own (``immich_double_*``), not Immich's: the lab proves where the ports answer, not their content."""

    worker = "api"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = (f"# HELP immich_double_up The Immich server test double's {self.worker} worker.\n"
                f"# TYPE immich_double_up gauge\nimmich_double_up{{worker=\"{self.worker}\"}} 1\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


def start_metrics() -> None:
    """Immich's metrics ports when IMMICH_TELEMETRY_INCLUDE names any group (8081 the API's, 8082 the workers')."""
    if not os.environ.get("IMMICH_TELEMETRY_INCLUDE"):
        return
    for worker, variable, default in (("api", "IMMICH_API_METRICS_PORT", 8081),
                                      ("microservices", "IMMICH_MICROSERVICES_METRICS_PORT", 8082)):
        handler = type(f"MetricsHandler_{worker}", (MetricsHandler,), {"worker": worker})
        port = int(os.environ.get(variable, default))
        metrics = ThreadingHTTPServer(("0.0.0.0", port), handler)  # noqa: S104 (inside the container)
        threading.Thread(target=metrics.serve_forever, name=f"metrics-{worker}", daemon=True).start()
        log(f"metrics ({worker}) on port {port}")


def main() -> None:
    version = (
        VERSION_FILE.read_text().strip() if VERSION_FILE.exists() else os.environ.get("IMMICH_DOUBLE_VERSION", "v3.3.1")
    )
    # Node writes UTF-8 whatever the locale (Nest's timestamp has a narrow no-break space).
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    log(f"Immich server TEST DOUBLE {version} starting")
    try:
        Handler.trusted = trusted_proxies(os.environ.get("IMMICH_TRUSTED_PROXIES"))
        config = load_config()
        db = connect_db()
        db.cursor().execute(SCHEMA)
        ping_redis()
        mount_checks(db)
    except StartupError as error:
        log(f"ImmichStartupError: {error}")
        sys.exit(1)
    Handler.api = Api(db, config, version)
    Handler.api.jobs.start()
    threading.Thread(target=retry_removals, name="retry-removals", daemon=True).start()
    # As PID 1 of its container Python would ignore `docker stop`'s SIGTERM (and be killed 10 s later).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    start_metrics()
    server = ThreadingHTTPServer(
        (os.environ.get("IMMICH_HOST", "0.0.0.0"), int(os.environ.get("IMMICH_PORT", "2283"))), Handler
    )  # noqa: S104
    log(f"listening on {server.server_address}")
    server.serve_forever()


if __name__ == "__main__":
    main()
