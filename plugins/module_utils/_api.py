# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared HTTP plumbing for the vendor API clients (_hetzner.py, _runpod.py).

One place for: bearer auth, JSON encoding, retries on 429/5xx and network errors with bounded
exponential backoff (honouring Retry-After), and turning a failed call into one clear message.
Each vendor client subclasses :class:`ApiClient` and implements :meth:`ApiClient.describe_error`
for its own error body.

This is a private module_utils file (leading underscore): not a public API of the collection.
"""

from __future__ import annotations

import json
import time
import traceback

REQUESTS_IMPORT_ERROR = None
try:
    import requests
except ImportError:  # pragma: no cover - exercised by the sanity import test
    requests = None
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])


class ApiError(Exception):
    """A call that failed for good. ``status`` is the HTTP status (None for network errors)."""

    def __init__(self, message, status=None, code=None, body=None):
        super(ApiError, self).__init__(message)
        self.status = status
        self.code = code
        self.body = body


class ApiClient(object):
    """A JSON API reached with a bearer token.

    ``sleep`` and ``session`` are injectable so unit tests run without waiting or sockets. Left out, they
    are ``time.sleep`` and a new ``requests.Session()``, both looked up when the client is built, so a test
    may also patch ``time.sleep`` or ``requests.Session``.
    """

    #: Vendor name used in messages, e.g. "Hetzner API".
    vendor = "API"

    def __init__(self, base_url, token, timeout=30, max_retries=5, backoff=1.0,
                 max_backoff=30.0, retry_budget=120.0, session=None, sleep=None,
                 user_agent="selfhost.immich"):
        if requests is None:
            raise ImportError("requests is required")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_budget = retry_budget
        self.session = session or requests.Session()
        self.sleep = sleep if sleep is not None else time.sleep
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }

    # -- hooks -------------------------------------------------------------------------------
    def describe_error(self, status, body):
        """Return (code, message) for a vendor error body. Override per API."""
        return None, _short(body)

    # -- core --------------------------------------------------------------------------------
    def request(self, method, path, body=None, params=None, accept_404=False):
        """Send one call; return the decoded JSON (or None for an empty body, or for 404 when accepted)."""
        url = self.base_url + path
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(method, url, headers=headers, data=data,
                                                params=params, timeout=self.timeout)
            except requests.RequestException as exc:
                if self._may_retry(attempt, started):
                    self.sleep(self._delay(attempt, None))
                    continue
                raise ApiError(f"{method} {path} failed: cannot reach {self.vendor}: {exc}") from exc
            status = response.status_code
            if status in RETRY_STATUSES and self._may_retry(attempt, started):
                self.sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            if status == 404 and accept_404:
                return None
            if status >= 400:
                parsed = _decode(response)
                code, message = self.describe_error(status, parsed)
                label = code or str(status)
                hint = ""
                if status in (401, 403):
                    hint = " (check the API token and its permissions)"
                elif status in RETRY_STATUSES:
                    hint = f" (gave up after {attempt} attempts)"
                raise ApiError(f"{method} {path} failed: {label}: {message}{hint}",
                               status=status, code=code, body=parsed)
            return _decode(response)

    def _may_retry(self, attempt, started):
        return attempt <= self.max_retries and time.monotonic() - started < self.retry_budget

    def _delay(self, attempt, retry_after):
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)

    def get(self, path, params=None, accept_404=False):
        return self.request("GET", path, params=params, accept_404=accept_404)

    def post(self, path, body=None):
        return self.request("POST", path, body=body if body is not None else {})

    def put(self, path, body):
        return self.request("PUT", path, body=body)

    def patch(self, path, body):
        return self.request("PATCH", path, body=body)

    def delete(self, path, accept_404=True):
        return self.request("DELETE", path, accept_404=accept_404)


def _decode(response):
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _short(body, limit=300):
    text = body if isinstance(body, str) else json.dumps(body) if body is not None else "no body"
    return text if len(text) <= limit else text[:limit] + "..."


def redact(value, secret_keys=("password", "token", "key", "secret", "api_key")):
    """Copy of a dict/list with values under secret-looking keys replaced, for diffs and results."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if any(s in str(k).lower() for s in secret_keys) and v not in (None, ""):
                out[k] = "********"
            else:
                out[k] = redact(v, secret_keys)
        return out
    if isinstance(value, list):
        return [redact(v, secret_keys) for v in value]
    return value
