"""What the API fakes in tests/fakes/ share: a threaded HTTP server, the request log, contract checks of every
request and answer, injected failures, the ``/_fake/`` control paths and the command line.

A vendor fake subclasses :class:`FakeApi`, names its spec, path prefix and error class (a :class:`Fault`
that renders the vendor's error body) and implements :meth:`FakeApi.route`. Each request is then, in order:
logged; checked against the spec (a violation is recorded in ``violations`` and refused with
:meth:`FakeApi.contract_fault`); checked for the bearer token (401); answered with an injected failure if one
is pending (:meth:`FakeApi.fail_next`); routed. Every answer to a request that met the spec is checked against
the spec too: an answer the real API would not give is recorded in ``response_problems`` (a bug of the fake).
A request the spec allows but the fake does not model is answered 501 (never a plausible 404 that could hide a
bug) and recorded in ``response_problems`` as well (:meth:`FakeApi.not_modelled`), so the test fails.

Control paths, outside every vendor's API (for a fake run as a process, e.g. by Molecule):
``GET /_fake/log``, ``GET /_fake/violations``, ``GET /_fake/response_problems``,
``POST /_fake/fail_next {"status": 503, ...}`` (the arguments of :meth:`FakeApi.fail_next`), ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import threading
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_core import Config, OpenAPI

if __package__:  # imported as ansible_collections.selfhost.immich.tests.fakes
    from . import contract
else:  # run as a script from this directory (Molecule's prepare starts fakes so)
    import contract

Contract, ContractViolation = contract.Contract, contract.ContractViolation

CONTROL_PREFIX = "/_fake/"
#: Environment variable naming the file with the token a fake run as a process accepts (or --token-file).
TOKEN_FILE_ENV = "FAKE_API_TOKEN_FILE"


class Fault(Exception):
    """An error answer; a vendor subclass renders its error body in :meth:`body`."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})

    def body(self) -> Any:
        raise NotImplementedError


class PatchedContract(Contract):
    """A :class:`contract.Contract` whose checked copy of the spec needs vendor fixes before openapi-core reads it.

    A subclass implements :meth:`patch` (it edits the copy; ``self.spec`` stays the file as published) and names
    where the API is served in ``served_at`` (host URL, path prefix). The rest is the base's loading: the spec cut
    to the modelled paths, status ranges upper-cased, nullable ``$ref`` fields inlined.
    """

    served_at: tuple[str, str] = ("", "")

    def __init__(self, spec_file: str, path_prefixes: tuple[str, ...] = ()) -> None:
        self.path = contract.spec_path(spec_file)
        self.spec = json.loads(self.path.read_text())
        checked = contract.keep_paths(copy.deepcopy(self.spec), path_prefixes)
        contract._upper_case_status_ranges(checked)
        contract._inline_nullable_refs(checked)
        self.patch(checked)
        self.openapi = OpenAPI.from_dict(checked, config=Config(
            spec_validator_cls=None, extra_media_type_deserializers=self.MEDIA_TYPES))
        self.host_url, self.server_path = self.served_at

    def patch(self, checked: dict) -> None:
        """Fix the copy of the spec the checks use."""
        raise NotImplementedError


@cache
def load_contract(spec_file: str, path_prefixes: tuple[str, ...] = (), contract_class: type[Contract] = Contract
                  ) -> Contract:
    """One parsed spec per file and process (parsing takes a while; a fake is started in many tests)."""
    return contract_class(spec_file, path_prefixes=path_prefixes)


def utc_now() -> str:
    """A timestamp as the vendors write them: 2026-11-25T10:00:00Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeApi:
    """The server and bookkeeping of one fake; thread-safe, one instance per test or process."""

    spec_file: str = ""       # file in the contracts directory
    prefix: str = ""          # path prefix of the API in URLs, e.g. "/v1"
    spec_paths: tuple[str, ...] = ()  # spec paths the fake models (all if empty); a fuller spec is cut to these
    contract_class: type[Contract] = Contract  # or a PatchedContract for a spec that needs fixes
    fault: type[Fault] = Fault
    unauthorized = "invalid token"

    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token, self.host, self.port = token, host, port
        # loaded now, not while the first request waits
        self.contract = load_contract(self.spec_file, self.spec_paths, self.contract_class)
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.reset()

    # (method, path regex, handler name): the default route()'s table; a handler gets the path's groups (digits as
    # int), query= and body= (empty_body's copy for a request without one).
    ROUTES: tuple[tuple[str, str, str], ...] = ()
    empty_body: Any = None

    # -- hooks -------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        """Answer a valid, authenticated request: (status, JSON answer or None). ``path`` is after the prefix."""
        for route_method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                args = [int(a) if a.isdigit() else a for a in match.groups()]
                given = copy.copy(self.empty_body) if body is None else body
                return getattr(self, name)(*args, query=query, body=given)
        raise self.not_modelled(method, path)

    def _start_action(self, command: str, resources: list[tuple[int, str]], change) -> dict:
        """A Hetzner action (the Storage Box and Cloud fakes): ``running`` until ``action_polls`` polls, then the
        fake's ``_finish`` applies ``change``. Needs ``_ids``, ``actions``, ``_pending`` and ``action_polls``."""
        action = {"id": next(self._ids), "command": command, "status": "running", "progress": 0,
                  "started": utc_now(), "finished": None, "error": None,
                  "resources": [{"id": rid, "type": rtype} for rid, rtype in resources]}
        self.actions[action["id"]] = action
        self._pending[action["id"]] = [self.action_polls, change]
        if self.action_polls <= 0:
            self._finish(action)
        return copy.deepcopy(action)

    def not_modelled(self, method: str, path: str, what: str = "") -> Fault:
        """The answer to a valid request this fake does not model: 501, recorded as a problem of the fake."""
        message = f"{method} {self.prefix}{path}{what} is valid but not modelled by this fake"
        with self.lock:
            self.response_problems.append(message)
        return self.fault(501, message)

    def contract_fault(self, violation: ContractViolation) -> Fault:
        """The answer to a request that breaks the spec."""
        return self.fault(404 if violation.unknown_path else 400, str(violation))

    def content_type(self, status: int) -> str:
        return "application/json"

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"

    def start(self) -> FakeApi:
        self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what tests steer and inspect --------------------------------------------------------
    def reset(self) -> None:
        """Forget the log, the recorded problems and pending failures (subclasses also reset their state)."""
        with self.lock:
            self.log: list[dict] = []                # every request: method, path, query, body, status
            self.violations: list[str] = []          # requests the real API would refuse
            self.response_problems: list[str] = []   # answers of this fake that break the spec (a fake bug)
            self.failures: list[dict] = []

    @property
    def writes(self) -> list[dict]:
        return [entry for entry in self.log if entry["method"] != "GET"]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def fail_next(self, status: int = 503, times: int = 1, method: str | None = None, path: str | None = None,
                  retry_after: str | None = "0", headers: dict | None = None) -> None:
        """Answer the next ``times`` requests matching ``method`` and the URL path prefix ``path`` (with the
        API prefix, e.g. "/v2/serverless") with ``status``, then serve normally. A 429 or 503 carries
        ``Retry-After: retry_after`` (None: no such header)."""
        headers = dict(headers or {})
        if status in (429, 503) and retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        with self.lock:
            self.failures.append(dict(status=status, times=times, method=method, path=path, headers=headers))

    # -- one request -------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str],
               raw_body: bytes | None) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (status, JSON answer or None, response headers)."""
        parts = urlsplit(raw_path)
        with self.lock:
            entry = {"method": method, "path": parts.path,
                     "query": {k: v[-1] for k, v in parse_qs(parts.query).items()}, "body": _decode(raw_body),
                     "status": None}
            self.log.append(entry)
            met_contract = False
            try:
                try:
                    self.contract.validate(method, raw_path, headers, raw_body)
                except ContractViolation as exc:
                    self.violations.append(str(exc))
                    raise self.contract_fault(exc) from None
                met_contract = True
                if headers.get("Authorization") != f"Bearer {self.token}":
                    raise self.fault(401, self.unauthorized)
                self._injected_failure(method, parts.path)
                status, answer = self.route(method, parts.path.removeprefix(self.prefix), entry["query"],
                                            entry["body"])
                extra: dict[str, str] = {}
            except Fault as fault:
                status, answer, extra = fault.status, fault.body(), fault.headers
            entry["status"] = status
            if answer is not None:
                extra = dict({"Content-Type": self.content_type(status)}, **extra)
            if met_contract and status != 501:  # 501 is the fake's own gap, recorded by not_modelled
                self._check_response(method, raw_path, status, extra, answer)
            return status, answer, extra

    def _injected_failure(self, method: str, path: str) -> None:
        for failure in self.failures:
            if failure["method"] in (None, method) and path.startswith(failure["path"] or ""):
                failure["times"] -= 1
                if failure["times"] <= 0:
                    self.failures.remove(failure)
                raise self.fault(failure["status"], "injected failure", headers=failure["headers"])

    def _check_response(self, method: str, raw_path: str, status: int, headers: dict, answer: Any) -> None:
        data = None if answer is None else json.dumps(answer).encode()
        try:
            self.contract.validate_response(method, raw_path, status, headers, data)
        except ContractViolation as exc:
            self.response_problems.append(str(exc))
        except Exception as exc:  # a broken spec lookup is a problem of the fake as well
            self.response_problems.append(f"{method} {urlsplit(raw_path).path} -> {status}: {exc!r}")

    def control(self, method: str, action: str, raw_body: bytes | None) -> tuple[int, Any]:
        """The ``/_fake/<action>`` paths."""
        if method == "GET" and action in ("log", "violations", "response_problems"):
            with self.lock:
                return 200, list(getattr(self, action))
        if method == "POST" and action == "fail_next":
            self.fail_next(**json.loads(raw_body or b"{}"))
            return 204, None
        if method == "POST" and action == "reset":
            self.reset()
            return 204, None
        return 404, self.fault(404, f"no control action {method} {action}").body()


def _decode(raw_body: bytes | None) -> Any:
    if not raw_body:
        return None
    try:
        return json.loads(raw_body)
    except ValueError:
        return raw_body.decode(errors="replace")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fake: FakeApi = self.server.fake
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        if self.path.startswith(CONTROL_PREFIX):
            status, answer = fake.control(self.command, self.path[len(CONTROL_PREFIX):], raw_body)
            headers = {} if answer is None else {"Content-Type": "application/json"}
        else:
            status, answer, headers = fake.handle(self.command, self.path, dict(self.headers.items()), raw_body)
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, *args: Any) -> None:  # keep pytest and Molecule output quiet
        pass


# -- command line ------------------------------------------------------------------------------
def argument_parser(description: str, port: int = 0, token_option: str = "--token") -> argparse.ArgumentParser:
    """The options every fake takes from a shell (``token_option``: the vendor's name for the token); a vendor
    adds its own. :func:`token_of` reads the token they give."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port, help=f"0: any free port (default {port})")
    token = parser.add_mutually_exclusive_group()
    token.add_argument(token_option, dest="token", help="the bearer token to accept (shows in ps: a test's only)")
    token.add_argument("--token-file", type=Path, default=os.environ.get(TOKEN_FILE_ENV) or None,
                       help=f"file holding the token to accept, kept out of ps (default: ${TOKEN_FILE_ENV})")
    return parser


def token_of(args: argparse.Namespace) -> str | None:
    """The token given on the command line, else the content of the token file (surrounding whitespace
    stripped; an empty file is an error), else None (the vendor's default)."""
    if args.token is not None or args.token_file is None:
        return args.token
    token = args.token_file.read_text().strip()
    if not token:
        raise SystemExit(f"no token in {args.token_file}")
    return token


def serve(fake: FakeApi, banner: str) -> None:
    """Run ``fake`` until interrupted; ``banner`` (with ``{url}``) is printed once it listens.

    Violations seen are printed to stderr on the way out.
    """
    fake.start()
    print(banner.format(url=fake.url), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if fake.violations:
            print("contract violations:\n  " + "\n  ".join(fake.violations), file=sys.stderr)
        fake.stop()
