"""Scripted HTTP for unit tests: the exact sequence of calls a module must make, hrobot FetchUrlCall style.

    session = ScriptedSession([
        Call("GET", "/storage_boxes", params={"name": "photos"}).returns(200, {"storage_boxes": []}),
        Call("POST", "/storage_boxes/1/actions/update_access_settings", body={"ssh_enabled": True})
            .returns(201, {"action": {...}}),
    ])
    client = HetznerClient(base_url, token, session=session, sleep=lambda s: None)
    ...
    session.assert_done()

or in one go, the client's sleeps recorded: ``client, session, sleeps = scripted_client(HetznerClient, url, calls)``.
Modules run in-process are scripted the same way through tests/unit/module_harness.py.

A call that is not the next one expected, or has another body, fails the test at once with both shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

_UNSET = object()


@dataclass
class Call:
    method: str
    path: str
    body: Any = _UNSET
    params: Any = _UNSET
    status: int = 200
    response: Any = None
    response_headers: dict = field(default_factory=dict)
    raises: Exception | None = None

    def returns(self, status: int, response: Any = None, headers: dict | None = None) -> Call:
        self.status, self.response, self.response_headers = status, response, headers or {}
        return self

    def fails_with(self, exc: Exception) -> Call:
        self.raises = exc
        return self


class ScriptedSession:
    """Stands in for requests.Session: answers from the script and records what was sent."""

    def __init__(self, calls: list[Call]) -> None:
        self.expected = list(calls)
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method, url, headers=None, data=None, params=None, timeout=None):
        path = urlsplit(url).path
        body = json.loads(data) if data else None
        self.sent.append((method, path, body))
        assert self.expected, f"unexpected extra call {method} {path} body={body}"
        call = self.expected.pop(0)
        assert (method, path) == (call.method, call.path), (
            f"expected {call.method} {call.path}, got {method} {path} body={body}"
        )
        if call.body is not _UNSET:
            assert body == call.body, f"{method} {path}: body {body!r} != expected {call.body!r}"
        if call.params is not _UNSET:
            assert (params or None) == call.params, f"{method} {path}: params {params!r} != {call.params!r}"
        assert headers and headers.get("Authorization", "").startswith("Bearer "), "no bearer token sent"
        if call.raises is not None:
            raise call.raises
        response = requests.Response()
        response.status_code = call.status
        response.headers.update(call.response_headers)
        response._content = b"" if call.response is None else json.dumps(call.response).encode()
        return response

    @property
    def writes(self) -> list[tuple[str, str, Any]]:
        return [s for s in self.sent if s[0] != "GET"]

    def assert_done(self) -> None:
        assert not self.expected, f"calls never made: {[(c.method, c.path) for c in self.expected]}"


def scripted_client(client_class: type, base_url: str, calls: list[Call], token: str = "unit-test-token",
                    **kwargs: Any) -> tuple[Any, ScriptedSession, list[float]]:
    """(client, session, sleeps): an ``_api.ApiClient`` subclass answered by ``calls``, its sleeps recorded."""
    session, sleeps = ScriptedSession(calls), []
    return client_class(base_url, token, session=session, sleep=sleeps.append, **kwargs), session, sleeps
