"""_api: retries only where they can succeed within one deadline, a POST never duplicated, the token never echoed,
connection options and the secret mask."""

from __future__ import annotations

import pytest
import requests
from ansible_collections.selfhost.immich.plugins.module_utils._api import (
    MASK,
    ApiClient,
    ApiError,
    Plan,
    api_url_problem,
    changed_fields,
    connection_argument_spec,
    connection_problems,
    is_loopback,
    is_secret_name,
    merged,
    path_segment,
    redact,
    url_secrets,
)
from ansible_collections.selfhost.immich.plugins.module_utils._hetzner import HetznerClient
from ansible_collections.selfhost.immich.plugins.module_utils._runpod import PARTIAL_KEYS, RunpodClient
from ansible_collections.selfhost.immich.tests.unit.utils.http_calls import Call, ScriptedSession

TOKEN = "Mk7r-unit-token-0001"


class Clock:
    """A clock that only the client's sleeps move."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(calls, **kwargs):
    clock, session = Clock(), ScriptedSession(calls)
    api = ApiClient("https://api.test", TOKEN, session=session, sleep=clock.sleep, clock=lambda: clock.now, **kwargs)
    return api, session, clock


def test_one_deadline_includes_the_sleeps():
    api, session, clock = client([Call("GET", "/x").returns(503)] * 2, retry_budget=10, backoff=4)
    with pytest.raises(ApiError, match=r"^GET /x failed: 503: no body \(gave up after 2 attempts\)$"):
        api.get("/x")
    assert clock.sleeps == [4.0]  # the next wait (8 s) would end after the deadline: no sleep, no call
    session.assert_done()


@pytest.mark.parametrize("retry_after, slept", [
    ("-5", 1.0), ("NaN", 1.0), ("inf", 1.0), ("Wed, 21 Oct 2026 07:28:00 GMT", 1.0), ("3", 3.0), ("86400", 30.0),
])
def test_retry_after_is_clamped(retry_after, slept):
    calls = [Call("GET", "/x").returns(429, None, {"Retry-After": retry_after}), Call("GET", "/x").returns(200, {})]
    api, _, clock = client(calls)
    assert api.get("/x") == {}
    assert clock.sleeps == [slept]


@pytest.mark.parametrize("error", [
    requests.exceptions.InvalidURL("bad url"), requests.exceptions.MissingSchema("no scheme"),
    requests.exceptions.InvalidHeader("bad header"), requests.exceptions.SSLError("certificate verify failed"),
])
def test_errors_that_cannot_pass_are_not_retried(error):
    api, session, clock = client([Call("GET", "/x").fails_with(error)])
    with pytest.raises(ApiError, match="^GET /x failed: cannot reach API: "):
        api.get("/x")
    assert clock.sleeps == [] and len(session.sent) == 1


def test_network_errors_and_server_errors_are_retried():
    calls = [Call("GET", "/x").fails_with(requests.ReadTimeout("slow")), Call("GET", "/x").returns(502),
             Call("GET", "/x").returns(200, {"ok": True})]
    api, session, clock = client(calls)
    assert api.get("/x") == {"ok": True}
    assert clock.sleeps == [1.0, 2.0]


def test_a_post_whose_answer_was_lost_is_not_resent_without_a_lookup():
    api, session, clock = client([Call("POST", "/things").returns(504)])
    with pytest.raises(ApiError, match=r"gave up after 1 attempts"):
        api.request("POST", "/things", {"name": "a"})
    assert [s[0] for s in session.sent] == ["POST"] and clock.sleeps == []


def test_a_post_is_resent_only_when_the_lookup_finds_nothing():
    lookups = []
    api, session, clock = client([Call("POST", "/things").fails_with(requests.ReadTimeout("lost")),
                                  Call("POST", "/things").returns(201, {"id": 2})])
    assert api.request("POST", "/things", {"name": "a"}, recover=lambda: lookups.append("looked") or None) == {"id": 2}
    assert lookups == ["looked"] and [s[0] for s in session.sent] == ["POST", "POST"]


def test_a_post_that_took_effect_is_not_resent():
    api, session, clock = client([Call("POST", "/things").returns(502)])
    found = {"id": 1, "name": "a"}
    assert api.request("POST", "/things", {"name": "a"}, recover=lambda: found) == found
    assert len(session.sent) == 1 and clock.sleeps == []


def test_a_refused_post_is_retried_without_a_lookup():
    api, session, _ = client([Call("POST", "/things").returns(429), Call("POST", "/things").returns(201, {"id": 3})])
    assert api.request("POST", "/things", {"name": "a"}) == {"id": 3}


def test_the_token_is_scrubbed_from_http_layer_errors():
    error = requests.exceptions.InvalidHeader(f"Invalid header value b'Bearer {TOKEN}\\n'")
    api, _, _ = client([Call("GET", "/x").fails_with(error)])
    with pytest.raises(ApiError) as raised:
        api.get("/x")
    assert TOKEN not in str(raised.value) and MASK in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


@pytest.mark.parametrize("token, problem", [
    ("", "api_token is empty"),
    (TOKEN + "\n", "api_token has surrounding whitespace or a line break"),
    (" " + TOKEN, "api_token has surrounding whitespace or a line break"),
    (TOKEN + "\r\n", "api_token has surrounding whitespace or a line break"),
    ("Mk7r-tök-0001", "api_token may only contain visible ASCII"),
    ("Mk7r tok", "api_token may only contain visible ASCII"),
])
def test_bad_tokens_are_named_never_echoed(token, problem):
    problems = connection_problems({"api_token": token, "api_url": "https://api.test/v1", "api_timeout": 30})
    assert len(problems) == 1 and problems[0].startswith(problem)
    assert token.strip() == "" or token.strip() not in problems[0]


EXAMPLE = "for example https://api.example.com/v1"
PLAIN_HTTP = ("api_url uses plain http:// to {}, which is not a loopback address: the API token would travel "
              "unencrypted. Use https://, or set api_allow_http=true to allow it (for test labs only)")
CREDENTIALS = "api_url must not contain user credentials (user:password@): the token goes in api_token"
WHITESPACE = "api_url must not contain whitespace, line breaks or control characters"
QUERY = "api_url must not have a query (?...) or fragment (#...): give the API's base URL only"
SCHEME = f"api_url must start with https:// (or http://), {EXAMPLE}"
HOST = f"api_url must name a host (a name or an IP address) and an optional port 1-65535, {EXAMPLE}"
PATH = "api_url has a path with characters or '.'/'..' segments an API base URL cannot have"


@pytest.mark.parametrize("url", [
    "https://api.hetzner.com/v1", "https://api.runpod.io/v2/", "https://10.0.0.5:8443/v1", "https://[2001:db8::1]/v2",
    "http://127.0.0.1:18091/v1", "http://127.200.3.4/v2", "http://localhost:8080/v1", "http://LocalHost/v1",
    "http://[::1]:18092/v2", "https://api.test/a%2Fb/v1",
])
def test_api_url_accepted(url):
    assert api_url_problem(url) is None


@pytest.mark.parametrize("url, problem", [
    # plain http off this machine: the bearer token would cross the network in clear
    ("http://api.hetzner.com/v1", PLAIN_HTTP.format("api.hetzner.com")),
    ("http://172.18.0.1:18091/v1", PLAIN_HTTP.format("172.18.0.1")),
    ("http://10.0.0.5/v2", PLAIN_HTTP.format("10.0.0.5")),
    ("http://localhost.example.com/v1", PLAIN_HTTP.format("localhost.example.com")),  # names are not resolved
    ("http://127.1/v1", PLAIN_HTTP.format("127.1")),  # not an address ipaddress reads: not trusted as loopback
    ("http://[::ffff:127.0.0.1]/v1", PLAIN_HTTP.format("::ffff:7f00:1")),
    ("http://[2001:db8::1]/v1", PLAIN_HTTP.format("2001:db8::1")),
    ("http://0.0.0.0:18091/v1", PLAIN_HTTP.format("0.0.0.0")),
    # schemes
    ("ftp://api.example.com/v1", SCHEME), ("file:///etc/passwd", SCHEME), ("api.hetzner.com/v1", SCHEME),
    ("HTTPS://api.example.com/v1", SCHEME), ("https:/api.example.com/v1", SCHEME), ("javascript:alert(1)", SCHEME),
    # whitespace and line breaks anywhere
    ("https://api.example.com/v1\n", WHITESPACE), ("https://api.example.com/v1\nHost: evil", WHITESPACE),
    (" https://api.example.com/v1", WHITESPACE), ("https://a b/v1", WHITESPACE), ("https://x/v1\t", WHITESPACE),
    ("https://x/v1\u2028", WHITESPACE), ("https://x/v1\x00", WHITESPACE),
    # user credentials
    ("https://user:Mk7rSecret@api.example.com/v1", CREDENTIALS), ("http://u@127.0.0.1/v1", CREDENTIALS),
    ("https://x\\@y/v1", CREDENTIALS),
    # query and fragment
    ("https://api.example.com/v1?x=1", QUERY), ("https://api.example.com/v1#frag", QUERY),
    ("https://api.example.com/v1?", QUERY),
    # host and port
    ("https://", HOST), ("https:///v1", HOST), ("https://x:0/v1", HOST), ("https://x:65536/v1", HOST),
    ("https://x:/v1", HOST), ("https://x:+80/v1", HOST), ("https://x:8o/v1", HOST), ("https://-x/v1", HOST),
    ("https://x./v1", HOST), ("https://ex%41mple.com/v1", HOST), ("https://bücher.example/v1", HOST),
    ("https://[::1/v1", f"api_url is not a well-formed URL, {EXAMPLE}"),
    # path
    ("https://x/../v1", PATH), ("https://x/v1/..", PATH), ("https://x/./v1", PATH), ("https://x/v1/%zz", PATH),
    ("https://x/v1/ü", PATH), ("https://x/v1/<script>", PATH),
    ("", f"api_url must not be empty: give the API's base URL, {EXAMPLE}"),
])
def test_api_url_refused_with_the_reason(url, problem):
    assert api_url_problem(url) == problem
    assert api_url_problem(url, allow_http=True) == (None if problem.startswith("api_url uses plain http") else problem)


def test_api_url_message_never_quotes_credentials():
    secret = "Mk7rSecret"
    for url in (f"https://user:{secret}@api.example.com/v1", f"https://api.example.com/v1?token={secret}",
                f"https://api.example.com/{secret}\n", f"http://{secret}@10.0.0.1/v1"):
        assert secret not in api_url_problem(url)


@pytest.mark.parametrize("url, masked", [
    ("https://user:pw@api.example.com/v1", True), ("https://api.example.com/v1?token=x", True),
    ("https://api.example.com/v1#x", True), ("https://api.example.com/v1", False), (None, False),
])
def test_a_url_that_may_carry_a_secret_is_masked_whole(url, masked):
    assert url_secrets(url) == ({url} if masked else set())


def test_the_opt_in_only_lifts_the_plain_http_rule():
    assert api_url_problem("http://172.18.0.1:18091/v1", allow_http=True) is None
    assert api_url_problem("http://u:p@172.18.0.1:18091/v1", allow_http=True) == CREDENTIALS
    assert api_url_problem("ftp://172.18.0.1/v1", allow_http=True) == SCHEME


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.255.255.254", True), ("::1", True), ("localhost", True), ("LOCALHOST", True),
    ("128.0.0.1", False), ("10.0.0.1", False), ("::2", False), ("localhost.", False), ("my-localhost", False),
])
def test_loopback_is_decided_without_resolving(host, loopback):
    assert is_loopback(host) is loopback


def test_connection_options_carry_the_opt_in_and_connection_problems_read_it():
    spec = connection_argument_spec(ApiClient)
    assert spec["api_allow_http"] == {"type": "bool", "default": False}
    params = {"api_token": TOKEN, "api_url": "http://172.18.0.1:18091/v1", "api_timeout": 30, "api_allow_http": False}
    assert connection_problems(params) == [PLAIN_HTTP.format("172.18.0.1")]
    assert connection_problems(dict(params, api_allow_http=True)) == []
    assert connection_problems(dict(params, api_url="http://127.0.0.1:18091/v1")) == []


@pytest.mark.parametrize("timeout", [0, -1, 601])
def test_api_timeout_range(timeout):
    assert connection_problems({"api_token": TOKEN, "api_url": "https://x", "api_timeout": timeout}) == [
        f"api_timeout must be 1 to 600 seconds, got {timeout}"]


@pytest.mark.parametrize("name, secret", [
    ("DB_PASS", True), ("AUTH_HEADER", True), ("SENTRY_DSN", True), ("PGPWD", True), ("AWS_CREDENTIALS", True),
    ("HF_TOKEN", True), ("api_key", True), ("client_secret", True), ("DATABASE_URL", True), ("password", True),
    ("PORT", False), ("IMMICH_HOST", False), ("PORT_HEALTH", False), ("MACHINE_LEARNING_WORKERS", False),
])
def test_secret_names_by_list_and_pattern(name, secret):
    assert is_secret_name(name) is secret


def test_redact_masks_nested_secret_values_only():
    assert redact({"env": {"DB_PASS": "x", "PORT": "1", "EMPTY_KEY": ""}, "items": [{"token": "t"}]}) == {
        "env": {"DB_PASS": MASK, "PORT": "1", "EMPTY_KEY": ""}, "items": [{"token": MASK}]}


@pytest.mark.parametrize("value, segment", [(42, "42"), ("ep000001", "ep000001"), ("a/b", "a%2Fb"),
                                            ("a?b#c", "a%3Fb%23c"), ("...", "..."), ("a b", "a%20b")])
def test_path_segment_quotes_ids(value, segment):
    assert path_segment(value) == segment


@pytest.mark.parametrize("value", ["..", ".", "", "a\nb", True])
def test_path_segment_refuses_what_would_leave_the_segment(value):
    with pytest.raises(ApiError, match=r"^RunPod id .* cannot be used in a URL path$"):
        path_segment(value, "RunPod id")


@pytest.mark.parametrize("client_class, token_env, url_env, url", [
    (HetznerClient, ["HETZNER_API_TOKEN", "HCLOUD_TOKEN"], ["HETZNER_API_URL"], "https://api.hetzner.com/v1"),
    (RunpodClient, ["RUNPOD_API_KEY"], ["RUNPOD_API_URL"], "https://api.runpod.io/v2"),
])
def test_each_vendor_client_names_its_connection_defaults(client_class, token_env, url_env, url):
    spec = connection_argument_spec(client_class)
    assert spec["api_token"]["fallback"][1] == token_env and spec["api_token"]["no_log"] is True
    assert spec["api_url"]["fallback"][1] == url_env and spec["api_url"]["default"] == url


def test_changed_fields_sends_only_set_and_changed_keys():
    current = {"ssh_enabled": False, "webdav_enabled": True, "samba_enabled": False}
    wanted = {"ssh_enabled": True, "webdav_enabled": True, "samba_enabled": None}
    assert changed_fields(current, wanted) == {"ssh_enabled": True}
    assert changed_fields(current, None) == {}


def test_changed_fields_sends_partial_workers_and_gpu_and_treats_lists_as_sets():
    current = {"workers": {"min": 0, "max": 2, "idleTimeout": 60}, "ports": ["22/tcp", "3003/http"],
               "gpu": {"pools": ["A", "B"], "minCudaVersion": None}, "dataCenterIds": [], "env": {"A": "1"}}
    desired = {"workers": {"max": 5, "min": 0}, "ports": ["3003/http", "22/tcp"],
               "gpu": {"pools": ["B", "A"], "minCudaVersion": ""}, "dataCenterIds": [], "env": {}}
    assert changed_fields(current, desired, PARTIAL_KEYS) == {"workers": {"max": 5}, "env": {}}
    assert merged(current, {"workers": {"max": 5}}, PARTIAL_KEYS)["workers"] == {"min": 0, "max": 5, "idleTimeout": 60}
    assert merged(current, {"workers": {"max": 5}})["workers"] == {"max": 5}  # not partial: replaced


def test_plan_send_adds_a_call_only_for_changes_and_predicts_its_effect():
    plan = Plan({"name": "a", "access": {"ssh": False, "samba": False}})
    plan.send("PUT", "/x", {})
    plan.send("POST", "/x/access", {"ssh": True}, key="access")
    plan.send("PUT", "/x", {"name": "b"})
    assert plan.calls == [("POST", "/x/access", {"ssh": True}, None), ("PUT", "/x", {"name": "b"}, None)]
    assert plan.desired == {"name": "b", "access": {"ssh": True, "samba": False}}
    assert plan.current == {"name": "a", "access": {"ssh": False, "samba": False}}
