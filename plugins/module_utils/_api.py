# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one module skeleton of the collection, shared by the Hetzner (_hetzner.py) and RunPod (_runpod.py) modules.

- :func:`connection_argument_spec`: the connection options of a vendor's client class (token and URL with its env
  fallbacks, the plain-HTTP opt-in, timeout); :func:`api_url_problem`: https only (plain http to loopback, or with
  ``api_allow_http``), no credentials, whitespace, query or fragment in the URL.
- :func:`path_segment`: an id made safe to put in a URL path (quoted; ``.``/``..`` refused).
- :func:`run_module`: builds the module with the vendor's connection options, refuses bad inputs before any call
  (:func:`connection_problems` plus the module's own checks), runs the module's plain function
  ``manage(module, client)`` and exits; every failure leaves through one place with ``msg``, ``status`` and ``code``.
- :class:`ApiClient`: bearer auth, JSON, retries only where they can succeed (network errors, 429, 5xx) within
  one deadline that includes the sleeps, a POST resent only after looking the resource up, and error messages
  that never carry the token.
- :class:`Plan`: the writes decided before any is sent, so check mode is exact by construction; what a write
  sends is :func:`changed_fields`, and :func:`merged` is what it makes of the resource.
- :func:`only_one`: the rule for "exactly one resource by this name"; :data:`MASK`, :func:`redact` and
  :func:`is_secret_name`: the one secret mask.

Private module_utils file (leading underscore): not a public API of the collection.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import re
import time
import traceback
from urllib.parse import quote, urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

REQUESTS_IMPORT_ERROR = None
try:
    import requests
except ImportError:  # pragma: no cover - exercised by the sanity import test
    requests = None
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

#: Answers worth another try: rate limited, or a server/gateway error that may pass.
RETRY_STATUSES = frozenset([429, 500, 502, 503, 504])
MASK = "********"

#: Names whose values are secrets (env keys, result keys), compared upper-cased: an explicit list...
SECRET_NAMES = frozenset(["PASSWORD", "PASSPHRASE", "API_KEY", "APIKEY", "TOKEN", "SECRET", "PRIVATE_KEY",
                          "DATABASE_URL", "DB_URL", "REDIS_URL", "CONNECTION_STRING", "COOKIE", "SESSION"])
#: ...plus every name containing one of these.
SECRET_PATTERNS = ("PASS", "PWD", "AUTH", "CRED", "DSN", "KEY", "TOKEN", "SECRET")

#: A host name or IPv4 address of an API URL (an IPv6 address is written in brackets and checked apart).
_URL_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
#: The path of an API URL: empty or /segments of unreserved characters, sub-delims, ':', '@' and %XX escapes.
_URL_PATH = re.compile(r"(/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*")
#: Host names that always mean this machine (besides 127.0.0.0/8 and ::1).
LOOPBACK_NAMES = frozenset(["localhost"])
#: What a bearer token may hold: visible ASCII (an HTTP header value), no spaces.
_TOKEN = re.compile(r"[\x21-\x7e]+")
#: Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ApiError(Exception):
    """A call that failed for good. ``status`` is the HTTP status (None for network errors and refused input)."""

    def __init__(self, message, status=None, code=None, body=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


class InputError(ApiError):
    """An input refused before any call was made."""

    def __init__(self, message):
        super().__init__(message, code="invalid_input")


# -- the connection options -------------------------------------------------------------------
def connection_argument_spec(client_class):
    """The options every module of the vendor of ``client_class`` takes (doc fragments: the vendor's and api)."""
    return dict(
        api_token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, list(client_class.token_env))),
        api_url=dict(type="str", default=client_class.default_url, fallback=(env_fallback, list(client_class.url_env))),
        api_allow_http=dict(type="bool", default=False),
        api_timeout=dict(type="int", default=30),
    )


def connection_problems(params):
    """What is wrong with the connection options; never quotes the token."""
    problems = []
    token = params["api_token"]
    if not token:
        problems.append("api_token is empty")
    elif token != token.strip() or CONTROL_CHARS.search(token):
        problems.append("api_token has surrounding whitespace or a line break (a vault value written as a block "
                        "scalar or piped through echo ends in a newline): remove it")
    elif not _TOKEN.fullmatch(token):
        problems.append("api_token may only contain visible ASCII characters (letters, digits, punctuation)")
    url_problem = api_url_problem(params["api_url"], params.get("api_allow_http", False))
    if url_problem:
        problems.append(url_problem)
    if not 0 < params["api_timeout"] <= 600:
        problems.append(f"api_timeout must be 1 to 600 seconds, got {params['api_timeout']}")
    return problems


def api_url_problem(url, allow_http=False):
    """Why ``url`` is not a safe API base URL, or None. The message never quotes the URL (it may hold a secret),
    only its host once user credentials have been ruled out.

    Refused: anything but http(s); whitespace or control characters; user credentials (``user:pass@``); a query or
    fragment; a bad host, port or path; and plain ``http://`` to a host that is not this machine (127.0.0.0/8,
    ::1, localhost) unless ``allow_http`` says so, because the bearer token would cross the network unencrypted.
    """
    example = "for example https://api.example.com/v1"
    if not url:
        return f"api_url must not be empty: give the API's base URL, {example}"
    if re.search(r"\s", url) or CONTROL_CHARS.search(url):
        return "api_url must not contain whitespace, line breaks or control characters"
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced [ or ] around an IPv6 address
        return f"api_url is not a well-formed URL, {example}"
    if parts.scheme not in ("http", "https") or not url.startswith(parts.scheme + "://"):
        return f"api_url must start with https:// (or http://), {example}"
    if "@" in parts.netloc:
        return "api_url must not contain user credentials (user:password@): the token goes in api_token"
    if "?" in url or "#" in url:
        return "api_url must not have a query (?...) or fragment (#...): give the API's base URL only"
    host = _url_host(parts)
    if host is None:
        return f"api_url must name a host (a name or an IP address) and an optional port 1-65535, {example}"
    if not _URL_PATH.fullmatch(parts.path) or {".", ".."} & set(parts.path.split("/")):
        return "api_url has a path with characters or '.'/'..' segments an API base URL cannot have"
    if parts.scheme == "http" and not allow_http and not is_loopback(host):
        return (f"api_url uses plain http:// to {host}, which is not a loopback address: the API token would "
                "travel unencrypted. Use https://, or set api_allow_http=true to allow it (for test labs only)")
    return None


def url_secrets(url):
    """What of ``url`` to keep out of all module output (the echoed module arguments included): the whole URL when
    it may carry a secret, in user credentials (``user:password@``), a query (``?token=``) or a fragment."""
    if isinstance(url, str) and any(mark in url for mark in "@?#"):
        return {url}
    return set()


def _url_host(parts):
    """The host of a split URL (without brackets), or None if the host or port is malformed."""
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.netloc.endswith(":") or port == 0:
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return None
    return host if _URL_HOST.fullmatch(host) else None


def is_loopback(host):
    """True if ``host`` (a name or address from a URL, without brackets) is this machine: never resolved, so a
    name other than ``localhost`` counts as remote even if it resolves to 127.0.0.1."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- input checks the modules share -----------------------------------------------------------
def name_problem(option, value, max_length=None):
    """Why ``value`` is not a usable name (empty, surrounding blanks, control characters), or None."""
    if value is None:
        return None
    if not value.strip():
        return f"{option} must not be empty"
    if value != value.strip() or CONTROL_CHARS.search(value):
        return f"{option} must not have surrounding whitespace, line breaks or control characters"
    if max_length and len(value) > max_length:
        return f"{option} may have at most {max_length} characters, got {len(value)}"
    return None


def range_problem(option, value, low=None, high=None):
    """Why the number ``value`` is outside [low, high] (or not finite), or None."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{option} must be a finite number, got {value}"
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low} to {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        return f"{option} must be {bounds}, got {value}"
    return None


def path_segment(value, what="id"):
    """``value`` (an id, usually from an API answer) as one URL path segment, percent-quoted.

    Quoting keeps ``/``, ``?`` and ``#`` inside the segment, but ``.`` and ``..`` are unreserved and would move the
    request up the path (``/serverless/..`` is ``/``): those, an empty value and control characters are refused.
    """
    text = str(value)
    if isinstance(value, bool) or text in ("", ".", "..") or CONTROL_CHARS.search(text):
        raise ApiError(f"{what} {text!r} cannot be used in a URL path")
    return quote(text, safe="")


# -- the one secret mask ----------------------------------------------------------------------
def is_secret_name(name):
    """True if a value named ``name`` (an env variable, a result key) is a secret."""
    upper = str(name).upper()
    return upper in SECRET_NAMES or any(pattern in upper for pattern in SECRET_PATTERNS)


def redact(value):
    """Copy of a dict/list with the values under secret names replaced by ``MASK``, for diffs and results."""
    if isinstance(value, dict):
        return {k: MASK if is_secret_name(k) and v not in (None, "") else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def secret_values(value):
    """Every non-empty value under a secret name, at any depth (for Ansible's no_log masking)."""
    found = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if is_secret_name(k) and isinstance(v, str) and v:
                found.add(v)
            else:
                found |= secret_values(v)
    elif isinstance(value, list):
        for v in value:
            found |= secret_values(v)
    return found


# -- one resource by name ---------------------------------------------------------------------
def only_one(items, name, what, key="name"):
    """The one item whose ``key`` is ``name`` (API filters may be fuzzy); several is an error, none is None."""
    matches = [item for item in items if item.get(key) == name]
    if len(matches) > 1:
        ids = ", ".join(str(m.get("id")) for m in matches)
        raise ApiError(f"{len(matches)} {what} are named {name!r} (ids {ids}): "
                       "rename or delete the extras, or use the id")
    return matches[0] if matches else None


# -- the client -------------------------------------------------------------------------------
class ApiClient:
    """A JSON API reached with a bearer token.

    ``sleep`` and ``session`` are injectable so unit tests run without waiting or sockets. Left out, they
    are ``time.sleep`` and a new ``requests.Session()``, both looked up when the client is built, so a test
    may also patch ``time.sleep`` or ``requests.Session``. ``retry_budget`` is the one deadline of a call,
    its retries and the sleeps between them included.
    """

    #: Vendor name used in messages, e.g. "Hetzner API".
    vendor = "API"
    #: The vendor's connection options (:func:`connection_argument_spec`): the URL they default to and the
    #: environment variables the token and the URL fall back to.
    default_url = None
    token_env = ()
    url_env = ()

    def __init__(self, base_url, token, timeout=30, max_retries=5, backoff=1.0,
                 max_backoff=30.0, retry_budget=120.0, session=None, sleep=None, clock=None,
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
        self.clock = clock or time.monotonic
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
    def request(self, method, path, body=None, params=None, accept_404=False, recover=None):
        """Send one call; return the decoded JSON (or None for an empty body, or for 404 when accepted).

        A POST may have taken effect when its answer is lost (timeout, 5xx): it is resent only if ``recover``
        is given and returns None (it looks the resource up; what it finds is returned instead). Without
        ``recover`` a POST is retried only when the server cannot have acted (429, connect timeout).
        """
        url = self.base_url + path
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, allow_nan=False)
        deadline = self.clock() + self.retry_budget
        attempt = 0
        while True:
            attempt += 1
            timeout = max(0.1, min(self.timeout, deadline - self.clock()))
            retry_after = failure = None
            try:
                response = self.session.request(method, url, headers=headers, data=data,
                                                params=params, timeout=timeout)
            except requests.RequestException as exc:
                failure = f"{method} {path} failed: cannot reach {self.vendor}: {self.scrub(exc)}"
                if not _transient(exc):
                    raise ApiError(failure) from None
                unsent = isinstance(exc, requests.ConnectTimeout)
                response = None
            else:
                status = response.status_code
                if status not in RETRY_STATUSES:
                    return self._answer(method, path, response, accept_404)
                unsent = status == 429
                retry_after = response.headers.get("Retry-After")
            delay = self._delay(attempt, retry_after)
            if attempt > self.max_retries or self.clock() + delay >= deadline:
                return self._give_up(method, path, failure, response, attempt)
            if method == "POST" and not unsent:
                if recover is None:
                    return self._give_up(method, path, failure, response, attempt)
                found = recover()
                if found is not None:
                    return found
            self.sleep(delay)

    def _answer(self, method, path, response, accept_404):
        status = response.status_code
        if status == 404 and accept_404:
            return None
        if status >= 400:
            self._raise_for(method, path, response)
        return _decode(response)

    def _give_up(self, method, path, failure, response, attempt):
        if failure is not None:
            raise ApiError(f"{failure} (gave up after {attempt} attempts)")
        self._raise_for(method, path, response, f" (gave up after {attempt} attempts)")

    def _raise_for(self, method, path, response, hint=""):
        status = response.status_code
        parsed = _decode(response)
        code, message = self.describe_error(status, parsed)
        if status in (401, 403):
            hint = " (check the API token and its permissions)"
        raise ApiError(self.scrub(f"{method} {path} failed: {code or status}: {message}{hint}"),
                       status=status, code=code, body=parsed)

    def _delay(self, attempt, retry_after):
        """Seconds to wait: Retry-After when it is a sane number, else exponential backoff; at most max_backoff."""
        try:
            wanted = float(retry_after)
        except (TypeError, ValueError):  # absent, or an HTTP date: back off
            wanted = None
        if wanted is None or not math.isfinite(wanted) or wanted < 0:
            wanted = self.backoff * (2 ** (attempt - 1))
        return min(wanted, self.max_backoff)

    def scrub(self, text):
        """``text`` without the token (exceptions of the HTTP layer may quote the Authorization header)."""
        text = str(text)
        for form in (self.token, self.token.strip(), repr(self.token)[1:-1]):
            if form:
                text = text.replace(form, MASK)
        return text

    def execute(self, method, path, body=None, recover=None):
        """Send one planned write, the one way a module writes (:class:`Plan`); vendors that start asynchronous
        actions also wait for them."""
        return self.request(method, path, body=body, recover=recover)

    def get(self, path, params=None, accept_404=False):
        return self.request("GET", path, params=params, accept_404=accept_404)


def _transient(exc):
    """A network error another try may cure; a bad URL, header or certificate never gets better."""
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader,
                        requests.exceptions.SSLError)):
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


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


# -- planned writes ---------------------------------------------------------------------------
def changed_fields(current, wanted, partial=()):
    """The entries of ``wanted`` that are set (not None) and differ from ``current``: what a partial update sends.

    None, "", [] and {} all mean unset, and lists compare as sets (APIs answer either for an unset field, and
    keep lists in their own order). A key in ``partial`` that holds a dict is compared, and sent, field by field.
    """
    changes = {}
    for key, want in (wanted or {}).items():
        have = (current or {}).get(key)
        if want is None:
            continue
        if key in partial and isinstance(want, dict):
            sub = changed_fields(have, want)
            if sub:
                changes[key] = sub
        elif _comparable(want) != _comparable(have):
            changes[key] = want
    return changes


def _comparable(value):
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, list):
        return sorted(value, key=str)
    return value


def merged(current, changes, partial=()):
    """A copy of ``current`` as it reads once ``changes`` are applied (a key in ``partial``: field by field)."""
    result = copy.deepcopy(current)
    for key, value in changes.items():
        if key in partial and isinstance(value, dict):
            result[key] = dict(result.get(key) or {}, **copy.deepcopy(value))
        else:
            result[key] = copy.deepcopy(value)
    return result


class Plan:
    """The calls that turn the current state into the desired one, decided before any is sent.

    ``desired`` starts as a copy of the current state and is updated with each call's effect, so it is
    both the check-mode prediction and the diff's ``after``.
    """

    def __init__(self, current):
        self.current = current
        self.desired = copy.deepcopy(current)
        self.calls = []

    def add(self, method, path, body=None, recover=None):
        self.calls.append((method, path, body, recover))

    def send(self, method, path, changes, key=None, partial=()):
        """Add a call sending ``changes`` (of :func:`changed_fields`) unless there are none, and apply them to
        ``desired``, or to ``desired[key]`` when the call changes that part of the resource."""
        if changes:
            self.add(method, path, changes)
            if key is None:
                self.desired = merged(self.desired, changes, partial)
            else:
                self.desired[key] = merged(self.desired[key], changes, partial)

    def __bool__(self):
        return bool(self.calls)

    def apply(self, client, check_mode):
        """Send the calls in order (none in check mode); return their answers."""
        return [] if check_mode else [client.execute(*call) for call in self.calls]


# -- the module skeleton ----------------------------------------------------------------------
def run_module(client_class, argument_spec, manage, input_problems, **module_kwargs):
    """Build the module, refuse bad inputs, run ``manage(module, client)`` and exit with its result.

    ``client_class`` is the vendor's :class:`ApiClient`, whose connection options join the module's own
    ``argument_spec``; ``input_problems(params)`` lists what is wrong with the module's own options (None entries,
    checks that found nothing, are dropped). Whatever goes
    wrong leaves through one ``fail_json`` with ``msg``, ``status`` (HTTP, None when no call failed) and ``code``,
    the token never in it.
    """
    module = AnsibleModule(argument_spec=dict(connection_argument_spec(client_class), **argument_spec),
                           supports_check_mode=True, **module_kwargs)
    params = module.params
    module.no_log_values.update(url_secrets(params.get("api_url")))
    if REQUESTS_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR,
                         status=None, code="missing_library")
    client = failure = None
    try:
        problems = [problem for problem in connection_problems(params) + input_problems(params) if problem]
        if problems:
            raise InputError("; ".join(problems))
        client = client_class(params["api_url"], params["api_token"], timeout=params["api_timeout"])
        result = manage(module, client)
    except ApiError as exc:
        failure = dict(msg=str(exc), status=exc.status, code=exc.code)
    except Exception as exc:  # a bug: report it, the token scrubbed from message and traceback
        scrub = client.scrub if client else str
        failure = dict(msg=scrub(f"unexpected {type(exc).__name__}: {exc}"), status=None, code="internal_error",
                       exception=scrub(traceback.format_exc()))
    if failure:  # outside the except block: ansible-core would attach that exception's traceback to the result
        module.fail_json(**failure)
    module.exit_json(**result)
