"""_api: retries only where they can succeed within one deadline, a POST never duplicated, the token never echoed,
connection options and the secret mask."""

from __future__ import annotations

import pytest
import requests
from ansible_collections.selfhost.immich.plugins.module_utils._api import (
    MASK,
    ApiClient,
    ApiError,
    connection_problems,
    is_secret_name,
    redact,
    relative_path_problem,
)
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
        api.post("/things", {"name": "a"})
    assert [s[0] for s in session.sent] == ["POST"] and clock.sleeps == []


def test_a_post_is_resent_only_when_the_lookup_finds_nothing():
    lookups = []
    api, session, clock = client([Call("POST", "/things").fails_with(requests.ReadTimeout("lost")),
                                  Call("POST", "/things").returns(201, {"id": 2})])
    assert api.post("/things", {"name": "a"}, recover=lambda: lookups.append("looked") or None) == {"id": 2}
    assert lookups == ["looked"] and [s[0] for s in session.sent] == ["POST", "POST"]


def test_a_post_that_took_effect_is_not_resent():
    api, session, clock = client([Call("POST", "/things").returns(502)])
    assert api.post("/things", {"name": "a"}, recover=lambda: {"id": 1, "name": "a"}) == {"id": 1, "name": "a"}
    assert len(session.sent) == 1 and clock.sleeps == []


def test_a_refused_post_is_retried_without_a_lookup():
    api, session, _ = client([Call("POST", "/things").returns(429), Call("POST", "/things").returns(201, {"id": 3})])
    assert api.post("/things", {"name": "a"}) == {"id": 3}


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


@pytest.mark.parametrize("url", ["api.hetzner.com/v1", "ftp://x/v1", "https://", "https://a b/", "https://x/v1?q=1",
                                 "https://x/v1\n", "http://x/#frag"])
def test_api_url_needs_a_scheme_and_host(url):
    assert connection_problems({"api_token": TOKEN, "api_url": url, "api_timeout": 30})[0].startswith("api_url must")


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


@pytest.mark.parametrize("path, problem", [
    ("..", "'..' segments"), ("../", "'..' segments"), ("a/../../b", "'..' segments"), ("/abs", "must not start"),
    ("a\nb", "control characters"), ("a\x00b", "control characters"),
])
def test_relative_paths_stay_below_their_root(path, problem):
    assert problem in relative_path_problem("home_directory", path)
    assert relative_path_problem("home_directory", "immich/library") is None
