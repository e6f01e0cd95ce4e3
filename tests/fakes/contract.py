"""Validate requests received by an API fake, and the fake's own answers, against the vendor's OpenAPI spec.

Every fake in tests/fakes/ runs each request through :meth:`Contract.validate` before it answers, so a module
that sends a body or path the real API would reject fails its test here instead of in production; it then
checks its answer with :meth:`Contract.validate_response`, so a fake cannot drift from the real API's shapes.
Where the specs come from is :func:`spec_path`'s business (and tests/contracts.yml's: file name -> published URL):
``SELFHOST_CONTRACTS_DIR``, then ``../shared/contracts`` beside the checkout, then a download of the vendor's
published file into a cache. A fake may keep only the paths it models (``path_prefixes``), so the full vendor
spec and a subset of it behave the same.
"""

from __future__ import annotations

import copy
import json
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathNotFound, ServerNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "tests" / "contracts.yml"
DOWNLOAD_TIMEOUT = 10


class ContractsMissing(Exception):
    """No copy of a vendor spec could be found or downloaded; the message says how to provide it (one line)."""


def _main_checkout() -> Path:
    """The main checkout of this repository (itself, unless this is a ``git worktree``)."""
    git = REPO_ROOT / ".git"
    if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text().split(":", 1)[1].strip())
        if gitdir.parent.name == "worktrees":
            return gitdir.parent.parent.parent
    return REPO_ROOT


def candidate_dirs() -> list[Path]:
    """Where the specs are looked for before downloading, in order."""
    override = os.environ.get("SELFHOST_CONTRACTS_DIR")
    dirs = [Path(override)] if override else []
    dirs += [REPO_ROOT.parent / "shared" / "contracts", _main_checkout().parent / "shared" / "contracts"]
    return list(dict.fromkeys(dirs))


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "selfhost-immich" / "contracts"


def manifest() -> dict[str, dict]:
    return yaml.safe_load(MANIFEST.read_text())


_failed_downloads: dict[str, str] = {}


def spec_path(spec_file: str) -> Path:
    """The file ``spec_file`` from the first place that has it; downloaded once into the cache if none does."""
    for directory in candidate_dirs() + [cache_dir()]:
        if (directory / spec_file).is_file():
            return directory / spec_file
    entry = manifest().get(spec_file) or {}
    url = entry.get("url")
    problem = _failed_downloads.get(spec_file) or _download(spec_file, url)
    if problem is None:
        return cache_dir() / spec_file
    _failed_downloads[spec_file] = problem
    raise ContractsMissing(
        f"vendor spec {spec_file} not found ({problem}): set SELFHOST_CONTRACTS_DIR to a directory holding the "
        f"files named in tests/contracts.yml (this one is published at {url}), or put them in "
        f"{REPO_ROOT.parent / 'shared' / 'contracts'}")


def _download(spec_file: str, url: str | None) -> str | None:
    """Fetch ``url`` into the cache; None when it worked, else why not."""
    if not url:
        return "no URL for it in tests/contracts.yml"
    if os.environ.get("SELFHOST_CONTRACTS_DOWNLOAD", "1") == "0":
        return "downloading is off (SELFHOST_CONTRACTS_DOWNLOAD=0)"
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as answer:  # noqa: S310 (a fixed https URL)
            data = answer.read()
        json.loads(data)
    except (OSError, ValueError) as exc:
        return f"download of {url} failed: {type(exc).__name__}: {exc}".replace("\n", " ")
    target = cache_dir() / spec_file
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return None


def keep_paths(spec: dict, prefixes: tuple[str, ...]) -> dict:
    """``spec`` with only the paths under ``prefixes`` (all if empty) and their server as the spec's server.

    The full vendor spec then refuses what the fake does not serve exactly like a subset file does.
    """
    if not prefixes:
        return spec
    kept = {path: item for path, item in spec["paths"].items() if path.startswith(prefixes)}
    servers = next((item["servers"] for item in kept.values() if isinstance(item, dict) and item.get("servers")),
                   spec.get("servers"))
    return dict(spec, paths=kept, servers=servers)


class ContractViolation(Exception):
    """A request the real API would not accept (unknown path, wrong body, missing field...), or an answer
    the real API would not give. ``unknown_path``: the spec has no such path (or server) at all."""

    def __init__(self, message: str, unknown_path: bool = False) -> None:
        super().__init__(message)
        self.unknown_path = unknown_path


@dataclass
class _Request:
    """The minimal request protocol openapi-core validates."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


@dataclass
class _Response:
    """The minimal response protocol openapi-core validates."""

    status_code: int
    headers: Headers
    content_type: str
    data: bytes | None


class Contract:
    """One vendor spec. ``validate()`` / ``validate_response()`` raise ContractViolation with a readable reason.

    ``relax_nullable_refs`` (default on, for every spec): a field written ``{"allOf": [{"$ref": X}],
    "nullable": true}`` accepts ``null``. OpenAPI 3.0 validators ignore ``nullable`` beside ``allOf`` and so
    refuse the ``null`` the spec means to allow (Hetzner: an action's ``error``, a box's ``snapshot_plan``,
    a box type's ``deprecation``). The referenced schema is inlined next to ``nullable`` instead, which only
    adds ``null`` to what such a field accepts: nothing the spec refuses otherwise becomes valid, so it is
    safe for every vendor (RunPod's 3.1 spec has no such field). Status ranges spelled ``4xx`` (Hetzner) are
    read as the ``4XX`` OpenAPI defines, so error answers are checked too. ``self.spec`` stays the vendor's
    file as published.
    """

    #: Error bodies some vendors send (RFC 9457) are JSON as well.
    MEDIA_TYPES = {"application/problem+json": json.loads}

    def __init__(self, spec_file: str, relax_nullable_refs: bool = True, path_prefixes: tuple[str, ...] = ()) -> None:
        self.path = spec_path(spec_file)
        self.spec = json.loads(self.path.read_text())
        checked = keep_paths(copy.deepcopy(self.spec), path_prefixes)
        _upper_case_status_ranges(checked)
        if relax_nullable_refs:
            _inline_nullable_refs(checked)
        # Hetzner's file spells response ranges '4xx' (the OpenAPI schema wants '4XX'), which a strict spec
        # check refuses although requests validate fine: the spec itself is not validated.
        self.openapi = OpenAPI.from_dict(checked, config=Config(
            spec_validator_cls=None, extra_media_type_deserializers=self.MEDIA_TYPES))
        server = urlsplit(checked["servers"][0]["url"])
        self.host_url = f"{server.scheme}://{server.netloc}"
        self.server_path = server.path.rstrip("/")

    def validate(self, method: str, raw_path: str, headers: dict[str, str], body: bytes | None) -> None:
        """Validate one request as the fake received it (raw_path includes the query string)."""
        parts = urlsplit(raw_path)
        content_type = _content_type(headers)
        if body and not content_type:
            raise ContractViolation(f"{method} {parts.path}: body sent without Content-Type")
        query = ImmutableMultiDict(
            [(k, v) for k, values in parse_qs(parts.query, keep_blank_values=True).items() for v in values]
        )
        request = self._request(method, parts.path, body, content_type,
                                RequestParameters(query=query, header=Headers(headers)))
        self._raise_for(f"{method} {parts.path}", self.openapi.unmarshal_request(request).errors)

    def validate_response(self, method: str, raw_path: str, status: int, headers: dict[str, str],
                          body: bytes | None) -> None:
        """Validate one answer to ``method raw_path`` as sent: status, headers and raw body."""
        path = urlsplit(raw_path).path
        content_type = _content_type(headers) or "application/json"
        response = _Response(status, Headers(headers), content_type, body or None)
        result = self.openapi.unmarshal_response(self._request(method, path, None, ""), response)
        self._raise_for(f"{method} {path} -> {status}", result.errors)

    def _request(self, method: str, path: str, body: bytes | None, content_type: str,
                 parameters: RequestParameters | None = None) -> _Request:
        return _Request(host_url=self.host_url, path=path, method=method.lower(), body=body or None,
                        content_type=content_type or "application/json",
                        parameters=parameters or RequestParameters())

    @staticmethod
    def _raise_for(label: str, errors: list[Exception]) -> None:
        if errors:
            unknown = any(isinstance(e, PathNotFound | ServerNotFound) for e in errors)
            raise ContractViolation(f"{label}: " + "; ".join(_describe(e) for e in errors), unknown_path=unknown)


def _content_type(headers: dict[str, str]) -> str:
    return headers.get("Content-Type") or headers.get("content-type") or ""


def _upper_case_status_ranges(spec: dict) -> None:
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and isinstance(operation.get("responses"), dict):
                operation["responses"] = {k.upper() if re.fullmatch(r"[1-5]xx", k) else k: v
                                          for k, v in operation["responses"].items()}


def _inline_nullable_refs(spec: dict) -> None:
    """``{"allOf": [{"$ref": X}], "nullable": true}`` -> X's keywords beside ``nullable`` (see Contract)."""
    schemas = spec.get("components", {}).get("schemas", {})

    def inline(node: Any, inlining: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            all_of = node.get("allOf")
            if node.get("nullable") and isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
                name = all_of[0]["$ref"].rsplit("/", 1)[1]
                if name not in inlining:  # a schema that nests itself keeps its reference
                    del node["allOf"]
                    node.update({k: copy.deepcopy(v) for k, v in schemas[name].items() if k not in node})
                    inlining += (name,)
            for value in node.values():
                inline(value, inlining)
        elif isinstance(node, list):
            for value in node:
                inline(value, inlining)

    inline(spec, ())


def _describe(error: Exception) -> str:
    """Flatten openapi-core's nested schema errors into one line."""
    text = str(error)
    nested = getattr(error, "__cause__", None)
    schema_errors = getattr(nested, "schema_errors", None) or getattr(error, "schema_errors", None)
    if schema_errors:
        text += " (" + ", ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '<body>'}: {e.message}" for e in schema_errors
        ) + ")"
    return text
