"""Validate requests received by an API fake against the vendor's published OpenAPI spec.

Every fake in tests/fakes/ runs each request through :class:`Contract` before it answers, so a module
that sends a body or path the real API would reject fails its test here instead of in production.
The specs live in ``../shared/contracts`` (the vendor's files, unchanged); ``SELFHOST_CONTRACTS_DIR``
overrides where they are looked for.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

REPO_ROOT = Path(__file__).resolve().parents[2]


def contracts_dir() -> Path:
    """Where the vendors' specs are: shared/contracts beside the checkout, unless overridden."""
    override = os.environ.get("SELFHOST_CONTRACTS_DIR")
    candidates = [Path(override)] if override else []
    candidates += [REPO_ROOT.parent / "shared" / "contracts", REPO_ROOT / "shared" / "contracts"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no contracts directory among {[str(c) for c in candidates]}")


class ContractViolation(Exception):
    """A request the real API would not accept (unknown path, wrong body, missing field...)."""


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


class Contract:
    """One vendor spec. ``validate()`` raises ContractViolation with a readable reason."""

    def __init__(self, spec_file: str) -> None:
        path = contracts_dir() / spec_file
        self.spec = json.loads(path.read_text())
        # The vendors' files are used unchanged; Hetzner's spells response ranges '4xx' (the OpenAPI
        # schema wants '4XX'), which a strict spec check refuses although requests validate fine.
        self.openapi = OpenAPI.from_dict(self.spec, config=Config(spec_validator_cls=None))
        server = urlsplit(self.spec["servers"][0]["url"])
        self.host_url = f"{server.scheme}://{server.netloc}"
        self.server_path = server.path.rstrip("/")

    def validate(self, method: str, raw_path: str, headers: dict[str, str], body: bytes | None) -> None:
        """Validate one request as the fake received it (raw_path includes the query string)."""
        parts = urlsplit(raw_path)
        query = ImmutableMultiDict(
            [(k, v) for k, values in parse_qs(parts.query, keep_blank_values=True).items() for v in values]
        )
        content_type = headers.get("Content-Type") or headers.get("content-type") or ""
        if body and not content_type:
            raise ContractViolation(f"{method} {parts.path}: body sent without Content-Type")
        request = _Request(
            host_url=self.host_url,
            path=parts.path,
            method=method.lower(),
            body=body or None,
            content_type=content_type or "application/json",
            parameters=RequestParameters(query=query, header=Headers(headers)),
        )
        result = self.openapi.unmarshal_request(request)
        if result.errors:
            reasons = "; ".join(_describe(error) for error in result.errors)
            raise ContractViolation(f"{method} {parts.path}: {reasons}")


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
