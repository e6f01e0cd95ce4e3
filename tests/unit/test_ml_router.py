"""selfhost-immich-ml-router (roles/immich/files): the ML scheduler's decision, its state file and its HTTP clients.

The script is imported by path. `decide` is driven with observations and a clock; `run_once` and the clients run
against local HTTP servers that record every request (method, path, JSON body, headers) and answer from a script.
Key values are compared, never printed: a failing assertion shows `False`, not the key.
"""

from __future__ import annotations

import datetime as dt
import importlib.machinery
import importlib.util
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from ansible_collections.selfhost.immich.tests.fakes import runpod_api

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "immich" / "files" / "selfhost-immich-ml-router"
_loader = importlib.machinery.SourceFileLoader("selfhost_immich_ml_router", str(SCRIPT))
_spec = importlib.util.spec_from_loader(_loader.name, _loader)
router = importlib.util.module_from_spec(_spec)
sys.modules[_loader.name] = router  # dataclasses resolve their module while the class is built
_loader.exec_module(router)

IMMICH_KEY = "immich-secret-KEY-0123456789"
RUNPOD_KEY = "rpa_SECRETSECRETSECRET0123456789"
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
ML = ("smartSearch", "faceDetection", "ocr")


def cfg(**overrides) -> router.Config:
    return router.config_from_dict(overrides)


def at(minutes: float, start: dt.datetime = T0) -> dt.datetime:
    return start + dt.timedelta(minutes=minutes)


def obs(backlog: int | dict = 0, paused: set | frozenset = frozenset(), mode_file: str | None = "same"):
    """Queues with `backlog` jobs (an int goes to smartSearch), `paused` ones paused."""
    counts = backlog if isinstance(backlog, dict) else {"smartSearch": backlog}
    queues = {n: router.QueueState(n, n in paused, counts.get(n, 0)) for n in ML}
    return router.Observation(queues, mode_file)


class Sim:
    """Drives decide() like the timer does: the mode file and the queues follow the executed actions."""

    def __init__(self, config: router.Config, state: dict | None = None) -> None:
        self.config, self.state, self.file_mode = config, state or router.initial_state(), None
        self.paused: set[str] = set()
        self.log: list[dict] = []
        self.messages: list[str] = []

    def tick(self, now: dt.datetime, backlog: int | dict = 0, *, fail: Callable[[dict], bool] = lambda a: False,
             reachable: bool = True) -> list[dict]:
        observation = obs(backlog, self.paused, self.file_mode) if reachable else \
            router.Observation(None, self.file_mode, "immich: GET /api/queues: Connection refused")
        decision = router.decide(self.state, observation, self.config, now)
        self.messages += decision.messages
        self.state = decision.state
        done = []
        for action in decision.actions:
            if fail(action):
                continue
            done.append(action)
            self.state["pending"] = [a for a in self.state["pending"] if a != action]
            if action["kind"] == "write_mode":
                self.file_mode = action["mode"]
            elif action["kind"] == "set_queue":
                (self.paused.add if action["paused"] else self.paused.discard)(action["queue"])
                if not action["paused"]:
                    self.state["paused_by_us"] = [q for q in self.state["paused_by_us"] if q != action["queue"]]
        self.log += done
        return done


def kinds(actions: list[dict]) -> list[str]:
    return [router.describe(a) for a in actions]


# -- thresholds and hysteresis ----------------------------------------------------------------------------------


def test_below_threshold_stays_idle_and_at_threshold_bursts():
    sim = Sim(cfg(runpod_endpoint_id="ep1", runpod_api_key_file="/k"))
    assert kinds(sim.tick(at(0), 0)) == ["write mode idle"]  # first run: the file did not exist
    assert sim.tick(at(1), 49) == []
    assert sim.state["mode"] == "idle"
    assert kinds(sim.tick(at(2), 50)) == ["write mode burst", "RunPod idle timeout 5 s"]
    assert sim.state["mode"] == "burst" and sim.state["since"] == at(2).timestamp()
    assert "mode idle -> burst: backlog 50 (threshold 50)" in sim.messages


def test_backlog_is_summed_over_the_three_ml_queues():
    sim = Sim(cfg(burst_threshold=30))
    sim.tick(at(0), {"smartSearch": 10, "faceDetection": 10, "ocr": 9})
    assert sim.state["mode"] == "idle" and sim.state["backlog"] == 29
    sim.tick(at(1), {"smartSearch": 10, "faceDetection": 10, "ocr": 10})
    assert sim.state["mode"] == "burst"


def test_backlog_oscillating_around_the_threshold_does_not_flap():
    sim = Sim(cfg(hold_seconds=600))
    sim.tick(at(0), 60)
    switches = len(sim.messages)
    for minute, backlog in enumerate([49, 51, 10, 50, 1, 48, 70, 3, 49, 2], start=1):
        assert sim.tick(at(minute), backlog) == []
        assert sim.state["mode"] == "burst"
    assert len(sim.messages) == switches


def test_empty_queues_for_less_than_the_hold_stay_burst():
    sim = Sim(cfg(hold_seconds=600, runpod_endpoint_id="ep1", runpod_api_key_file="/k"))
    sim.tick(at(0), 80)
    for minute in range(1, 10):  # empty at minutes 1..9: 480 s < 600 s
        assert sim.tick(at(minute), 0) == []
    assert sim.state["mode"] == "burst"
    sim.tick(at(10), 5)  # work again: the hold starts over
    for minute in range(11, 21):
        sim.tick(at(minute), 0)
    assert sim.state["mode"] == "burst"
    assert kinds(sim.tick(at(21), 0)) == ["write mode idle", "RunPod idle timeout 60 s"]
    assert sim.state["mode"] == "idle"
    assert "mode burst -> idle: backlog 0 (queues empty for 600 s)" in sim.messages


def test_missing_jobs_run_once_after_a_burst_once_immich_sees_idle():
    sim = Sim(cfg(hold_seconds=120))
    sim.tick(at(0), 200)
    sim.tick(at(1), 0)
    assert kinds(sim.tick(at(3), 0)) == ["write mode idle"]  # not yet: Immich still routes to RunPod
    assert kinds(sim.tick(at(4), 0)) == [f"missing run of {q}" for q in ML]
    for minute in range(5, 30):
        assert sim.tick(at(minute), 3) == []


def test_a_burst_caused_by_the_missing_run_does_not_end_in_another_one():
    sim = Sim(cfg(hold_seconds=120))
    sim.tick(at(0), 200)
    sim.tick(at(1), 0)
    sim.tick(at(3), 0)
    sim.tick(at(4), 0)  # missing run queued
    sim.tick(at(5), 90)  # 30 assets that fail every time come back
    assert sim.state["mode"] == "burst"
    sim.tick(at(6), 0)
    sim.tick(at(8), 0)
    assert sim.state["mode"] == "idle"
    for minute in range(9, 60):
        assert not any(a["kind"] == "start_missing" for a in sim.tick(at(minute), 0))
    sim.tick(at(100), 500)  # a later, real burst gets its missing run again
    sim.tick(at(101), 0)
    sim.tick(at(103), 0)
    assert any(a["kind"] == "start_missing" for a in sim.tick(at(104), 0))


def test_decide_does_not_modify_its_input_state():
    state = router.initial_state()
    before = json.dumps(state, sort_keys=True)
    router.decide(state, obs(100), cfg(), at(0))
    assert json.dumps(state, sort_keys=True) == before


# -- paused queues ------------------------------------------------------------------------------------------------


def test_a_queue_paused_by_someone_else_is_left_alone_and_reported():
    sim = Sim(cfg(local_ml=False, release_within_days=1, release_time="11:00"))
    sim.paused.add("ocr")  # paused by the admin before the router ever ran
    sim.tick(at(0), {"smartSearch": 5, "ocr": 400})
    assert sim.state["foreign_paused"] == ["ocr"]
    assert sim.state["backlog"] == 5  # its jobs cannot run: not part of the backlog
    assert "queues paused by someone else, left alone: ocr" in sim.messages
    for minute in range(1, 240):  # through the daily release at 11:00, its burst and the re-pause
        sim.tick(at(minute), {"smartSearch": 5 if minute < 61 else 0, "ocr": 400})
    assert not any(a.get("queue") == "ocr" and a["kind"] == "set_queue" for a in sim.log)
    assert "ocr" in sim.paused and "ocr" not in sim.state["paused_by_us"]
    assert any(a == {"kind": "set_queue", "queue": "smartSearch", "paused": False} for a in sim.log)


def test_local_ml_true_never_pauses_and_resumes_only_what_it_paused():
    state = router.initial_state()
    state["paused_by_us"] = ["faceDetection"]  # left from a local_ml false period
    sim = Sim(cfg(local_ml=True), state)
    sim.paused |= {"faceDetection", "smartSearch"}  # smartSearch: the admin's
    assert kinds(sim.tick(at(0), 0)) == ["write mode idle", "resume queue faceDetection"]
    assert sim.paused == {"smartSearch"}
    for minute in range(1, 30):
        assert sim.tick(at(minute), 0) == []
    assert sim.state["paused_by_us"] == [] and sim.state["foreign_paused"] == ["smartSearch"]


# -- crash between steps ------------------------------------------------------------------------------------------


class FakeImmich:
    def __init__(self, queues: dict[str, router.QueueState]) -> None:
        self.state, self.calls, self.crash_on = queues, [], None

    def queues(self):
        return dict(self.state)

    def set_paused(self, name, paused):
        self.calls.append(("pause" if paused else "resume", name))
        self.state[name] = router.QueueState(name, paused, self.state[name].backlog)
        if self.crash_on == ("set_paused", name):
            raise KeyboardInterrupt  # the process dies after the call, before its state is saved

    def start_missing(self, name):
        if self.crash_on == ("start_missing", name):
            raise KeyboardInterrupt  # dies before the call
        self.calls.append(("missing", name))


class FakeRunpod:
    def __init__(self) -> None:
        self.calls, self.answers = [], []

    def set_idle_timeout(self, seconds):
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, BaseException):
            raise answer
        self.calls.append(seconds)


def files_config(tmp_path: Path, **overrides) -> router.Config:
    return cfg(mode_file=str(tmp_path / "mode.yml"), state_file=str(tmp_path / "state" / "router.json"),
               **overrides)


def queues_with(backlog: dict[str, int], paused: set = frozenset()) -> dict:
    return {n: router.QueueState(n, n in paused, backlog.get(n, 0)) for n in ML}


def test_crash_after_the_mode_switch_runs_the_missing_jobs_next_run(tmp_path, capsys):
    config = files_config(tmp_path, hold_seconds=0)
    immich = FakeImmich(queues_with({"smartSearch": 300}))
    assert router.run_once(config, at(0), immich, None) == 0
    assert router.mode_in_file((tmp_path / "mode.yml").read_text(), config) == "burst"
    immich.state = queues_with({})
    router.run_once(config, at(1), immich, None)  # -> idle
    assert router.mode_in_file((tmp_path / "mode.yml").read_text(), config) == "idle"
    immich.crash_on = ("start_missing", "faceDetection")
    with pytest.raises(KeyboardInterrupt):
        router.run_once(config, at(2), immich, None)
    assert immich.calls == [("missing", "smartSearch")]
    saved = json.loads((tmp_path / "state" / "router.json").read_text())
    assert [a["queue"] for a in saved["pending"]] == ["faceDetection", "ocr"]
    immich.crash_on = None
    router.run_once(config, at(3), immich, None)
    assert immich.calls == [("missing", q) for q in ML]
    router.run_once(config, at(4), immich, None)
    assert immich.calls == [("missing", q) for q in ML]  # once, not again
    out = capsys.readouterr().out
    assert "mode idle -> burst: backlog 300" in out and "mode burst -> idle: backlog 0" in out


def test_crash_after_a_pause_still_knows_the_queue_is_ours(tmp_path):
    config = files_config(tmp_path, local_ml=False, release_within_days=1, release_time="23:00")
    immich = FakeImmich(queues_with({"smartSearch": 4}))
    immich.crash_on = ("set_paused", "faceDetection")
    with pytest.raises(KeyboardInterrupt):
        router.run_once(config, at(0), immich, None)
    immich.crash_on = None
    router.run_once(config, at(1), immich, None)
    state = json.loads((tmp_path / "state" / "router.json").read_text())
    assert state["paused_by_us"] == list(sorted(ML)) and state["foreign_paused"] == []
    router.run_once(config, at(13 * 60), immich, None)  # 23:00: released, all three resumed
    assert immich.calls[-3:] == [("resume", q) for q in ML]


def test_crash_after_a_resume_is_not_mistaken_for_a_hand_resume():
    config = cfg(local_ml=False, release_within_days=1, release_time="11:00")
    sim = Sim(config)
    sim.tick(at(0), 7)
    assert sim.paused == set(ML)
    # At 11:00 the release is decided and the resumes run, but the process dies before recording them.
    decision = router.decide(sim.state, obs(7, sim.paused, "idle"), config, at(60))
    assert sim.state["released_on"] is None and decision.state["mode"] == "burst"
    state = decision.state  # saved before executing; then each resume ran, and the crash lost their records
    second = router.decide(state, obs(7, set(), "burst"), config, at(61))
    assert second.state["paused_by_us"] == [] and second.actions == []
    assert not any("resumed by someone else" in m for m in second.messages)


# -- Immich unreachable, RunPod failing -------------------------------------------------------------------------------


def test_immich_unreachable_changes_nothing_and_is_logged_once():
    sim = Sim(cfg(hold_seconds=300))
    sim.tick(at(0), 100)
    sim.tick(at(1), 0)
    empty_since = sim.state["empty_since"]
    for minute in range(2, 20):
        assert sim.tick(at(minute), reachable=False) == []
    assert sim.state["mode"] == "burst" and sim.state["empty_since"] == empty_since
    assert sum("immich unreachable" in m for m in sim.messages) == 1
    sim.tick(at(20), 40)  # back, with work: the hold starts over
    assert sim.state["mode"] == "burst" and sim.state["empty_since"] is None
    assert "immich reachable again" in sim.messages


def test_immich_actions_wait_while_immich_is_unreachable():
    sim = Sim(cfg(hold_seconds=0))
    sim.tick(at(0), 100)
    sim.tick(at(1), 0)
    assert sim.tick(at(2), reachable=False) == []
    assert [a["kind"] for a in sim.state["pending"]] == []  # missing run not due while nobody can see the queues
    assert kinds(sim.tick(at(3), 0)) == [f"missing run of {q}" for q in ML]


def test_runpod_failing_is_retried_next_run_and_the_mode_stays_right(tmp_path, capsys):
    config = files_config(tmp_path, runpod_endpoint_id="ep1", runpod_api_key_file="/k")
    immich, runpod = FakeImmich(queues_with({"ocr": 120})), FakeRunpod()
    runpod.answers = [router.RouterError("runpod: PATCH /serverless/ep1 -> HTTP 400"),
                      router.RouterError("runpod: PATCH /serverless/ep1 -> HTTP 503")]
    assert router.run_once(config, at(0), immich, runpod) == 1
    assert router.mode_in_file((tmp_path / "mode.yml").read_text(), config) == "burst"
    assert router.run_once(config, at(1), immich, runpod) == 1
    assert router.mode_in_file((tmp_path / "mode.yml").read_text(), config) == "burst"
    assert router.run_once(config, at(2), immich, runpod) == 0
    assert runpod.calls == [5]
    assert router.run_once(config, at(3), immich, runpod) == 0
    assert runpod.calls == [5]
    out = capsys.readouterr().out
    assert "RunPod idle timeout 5 s failed, retried next run: runpod: PATCH /serverless/ep1 -> HTTP 400" in out


# -- stack_local_ml: false, the daily release ------------------------------------------------------------------------


def test_daily_release_pauses_releases_once_a_day_and_repauses():
    start = dt.datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    sim = Sim(cfg(local_ml=False, release_time="03:00", hold_seconds=300, runpod_endpoint_id="ep1",
                  runpod_api_key_file="/k", release_within_days=1))
    assert kinds(sim.tick(start, 3)) == ["write mode idle"] + [f"pause queue {q}" for q in ML]
    for minute in range(1, 180):  # uploads trickle in; nothing runs before 03:00
        sim.tick(at(minute, start), 3 + minute // 10)
    assert sim.state["mode"] == "idle" and sim.paused == set(ML)
    release = sim.tick(at(180, start), 21)
    assert kinds(release) == ["write mode burst", "RunPod idle timeout 5 s"] + [f"resume queue {q}" for q in ML]
    assert "mode idle -> burst: backlog 21 (daily release at 03:00)" in sim.messages
    sim.tick(at(181, start), 4)
    for minute in range(182, 186):  # empty for 240 s < the hold
        sim.tick(at(minute, start), 0)
    assert sim.state["mode"] == "burst"
    assert kinds(sim.tick(at(187, start), 0)) == ["write mode idle", "RunPod idle timeout 60 s"] + [
        f"pause queue {q}" for q in ML]
    sim.tick(at(188, start), 0)
    assert sim.state["mode"] == "idle" and sim.paused == set(ML)
    assert sim.state["paused_by_us"] == sorted(ML)
    # The missing run waits in the paused queues for the next release.
    assert sum(a["kind"] == "start_missing" for a in sim.log) == 3
    for minute in range(190, 24 * 60):  # later the same day: backlog grows, no second release
        sim.tick(at(minute, start), 30)
        assert sim.state["mode"] == "idle"
    sim.tick(at(24 * 60 + 179, start), 30)
    assert sim.state["mode"] == "idle"
    sim.tick(at(24 * 60 + 180, start), 30)
    assert sim.state["mode"] == "burst" and sim.state["released_on"] == "2026-12-06"
    assert sim.paused == set()


def test_a_small_backlog_waits_for_the_threshold_or_at_most_release_within_days():
    """The seed's trickle without local ML: a few jobs a day are not worth a cold start each; they are released
    once they reach the burst threshold or on the release_within_days-th day of waiting, whichever comes first."""
    start = dt.datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # the first photos arrive at noon on Dec 5
    sim = Sim(cfg(local_ml=False, release_time="03:00", release_within_days=3, burst_threshold=50))
    sim.tick(start, 9)
    sim.tick(start.replace(day=6, hour=2, minute=59), 18)
    sim.tick(start.replace(day=6, hour=3, minute=0), 18)  # Dec 6: the 2nd calendar day of waiting, 18 jobs
    assert sim.state["mode"] == "idle"
    assert "daily release at 03:00: backlog 18 below 50, waiting since 2026-12-05; released within 3 days" \
        in sim.messages
    sim.tick(start.replace(day=7, hour=2, minute=59), 27)
    assert sim.state["mode"] == "idle"
    sim.tick(start.replace(day=7, hour=3, minute=0), 27)
    assert sim.state["mode"] == "burst"  # the 3rd calendar day: released though below the threshold
    assert sim.state["backlog_since"] is None
    # A backlog at the threshold is released at the next release time, whatever its age.
    sim = Sim(cfg(local_ml=False, release_time="03:00", release_within_days=3, burst_threshold=50))
    sim.tick(start, 60)
    sim.tick(start.replace(day=6, hour=3, minute=0), 60)
    assert sim.state["mode"] == "burst"
    assert "mode idle -> burst: backlog 60 (daily release at 03:00)" in sim.messages


def test_daily_release_with_nothing_queued_is_skipped_quietly():
    start = dt.datetime(2026, 12, 5, 2, 59, tzinfo=UTC)
    sim = Sim(cfg(local_ml=False, release_time="03:00"))
    sim.tick(start, 0)
    assert sim.tick(at(1, start), 0) == []
    assert sim.state["mode"] == "idle" and sim.state["released_on"] == "2026-12-05"
    assert "daily release at 03:00: nothing to release" in sim.messages


def test_resuming_a_paused_queue_by_hand_releases_now():
    sim = Sim(cfg(local_ml=False, release_time="23:00"))
    sim.tick(at(0), 40)
    sim.paused.discard("smartSearch")  # the admin clicks "resume" in Immich
    actions = sim.tick(at(1), 40)
    assert sim.state["mode"] == "burst"
    assert "mode idle -> burst: backlog 40 (queue resumed by hand)" in sim.messages
    assert {a["queue"] for a in actions if a["kind"] == "set_queue"} == {"faceDetection", "ocr"}


# -- the mode file ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "status"), [("idle", 503), ("burst", 200)])
def test_mode_file_answers_ping_with_the_mode(mode, status):
    text = router.render_mode_file(mode, "runpod-ml", ("runpod-ml-allow",))
    http = yaml.safe_load(text)["http"]
    ping = http["routers"]["runpod-ml-mode"]
    assert ping["rule"] == "Path(`/ping`)" and ping["entryPoints"] == ["runpod-ml"]
    assert ping["priority"] > 100  # above the gateway's own /ping router
    assert ping["middlewares"] == ["runpod-ml-allow", "runpod-ml-mode"] and ping["service"] == "noop@internal"
    assert http["middlewares"]["runpod-ml-mode"]["errors"]["statusRewrites"] == {"418": status}
    config = cfg()
    assert router.mode_in_file(text, config) == mode
    assert router.mode_in_file(text.replace("priority: 200", "priority: 1"), config) is None


def test_a_mode_file_changed_behind_its_back_is_rewritten():
    sim = Sim(cfg())
    sim.tick(at(0), 0)
    sim.file_mode = None  # someone rewrote or deleted it
    assert kinds(sim.tick(at(1), 0)) == ["write mode idle"]


# -- HTTP clients against scripted HTTP -------------------------------------------------------------------------------


@contextmanager
def recording_server(respond: Callable[[str, str, object], tuple[int, object]]) -> Iterator[tuple[str, list]]:
    """A loopback server answering every method by respond(method, path, body) -> (status, JSON); yields its URL
    and the list of requests it got: (method, path, body, headers)."""
    requests: list = []

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            requests.append((self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()}))
            status, answer = respond(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_PATCH = handle_any  # noqa: N815

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()


def queue_list(backlogs: dict[str, int], paused: set = frozenset()) -> list[dict]:
    names = ("thumbnailGeneration", "metadataExtraction", *ML, "facialRecognition")
    return [{"name": n, "isPaused": n in paused,
             "statistics": {"active": 0, "completed": 999, "failed": 7, "delayed": 0, "waiting": backlogs.get(n, 0),
                            "paused": 0}} for n in names]


def key_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def only_key(headers: dict, name: str, value: str) -> bool:
    return headers.get(name) == value


def test_immich_client_requests(tmp_path):
    with recording_server(lambda m, p, b: (200, queue_list({"smartSearch": 3, "thumbnailGeneration": 500},
                                                           {"ocr"}) if m == "GET" else {})) as (url, requests):
        client = router.ImmichClient(url, key_file(tmp_path, "immich.key", IMMICH_KEY))
        queues = client.queues()
        client.set_paused("faceDetection", True)
        client.start_missing("ocr")
    assert queues == {"smartSearch": router.QueueState("smartSearch", False, 3),
                      "faceDetection": router.QueueState("faceDetection", False, 0),
                      "ocr": router.QueueState("ocr", True, 0)}
    assert [(m, p, b) for m, p, b, _ in requests] == [
        ("GET", "/api/queues", None),
        ("PUT", "/api/queues/faceDetection", {"isPaused": True}),
        ("PUT", "/api/jobs/ocr", {"command": "start", "force": False})]
    assert all(only_key(h, "x-api-key", IMMICH_KEY) for *_, h in requests)
    assert all("authorization" not in h for *_, h in requests)


def test_run_once_request_sequence_and_no_key_in_any_output(tmp_path, capsys):
    backlog = {"smartSearch": 200}

    def immich(method, path, body):
        if path == "/api/queues":
            return 200, queue_list(backlog)
        return 200, {}

    answers = [(400, {"title": "Bad Request", "detail": f"bad key {RUNPOD_KEY}"}), (503, {}),
               (200, {"id": "ep1", "workers": {"min": 0, "max": 2, "idleTimeout": 5}}),
               (200, {"id": "ep1", "workers": {"min": 0, "max": 2, "idleTimeout": 60}})]

    with recording_server(immich) as (immich_url, immich_requests), \
            recording_server(lambda m, p, b: answers.pop(0)) as (runpod_url, runpod_requests):
        config = files_config(tmp_path, immich_url=immich_url, runpod_api_url=runpod_url + "/v2",
                              runpod_endpoint_id="ep1", hold_seconds=60,
                              immich_api_key_file=key_file(tmp_path, "immich.key", IMMICH_KEY),
                              runpod_api_key_file=key_file(tmp_path, "runpod.key", RUNPOD_KEY))

        def run(minute):
            clients = (router.ImmichClient(config.immich_url, config.immich_api_key_file),
                       router.RunpodClient(config.runpod_api_url, config.runpod_api_key_file, "ep1"))
            return router.run_once(config, at(minute), *clients)

        assert run(0) == 1  # burst; RunPod answers 400
        assert run(1) == 1  # 503
        assert run(2) == 0  # 200
        backlog.clear()
        run(3)
        assert run(4) == 0  # empty for 60 s: idle, idle timeout back to 60
        run(6)  # the missing run
    assert [(m, p) for m, p, _, _ in immich_requests] == [("GET", "/api/queues")] * 5 + [
        ("GET", "/api/queues"), ("PUT", "/api/jobs/smartSearch"), ("PUT", "/api/jobs/faceDetection"),
        ("PUT", "/api/jobs/ocr")]
    assert {json.dumps(b) for m, _, b, _ in immich_requests if m == "PUT"} == {
        '{"command": "start", "force": false}'}
    assert [(m, p, b) for m, p, b, _ in runpod_requests] == [
        ("PATCH", "/v2/serverless/ep1", {"workers": {"idleTimeout": 5}})] * 3 + [
        ("PATCH", "/v2/serverless/ep1", {"workers": {"idleTimeout": 60}})]
    assert all(only_key(h, "authorization", "Bearer " + RUNPOD_KEY) for *_, h in runpod_requests)
    assert all(only_key(h, "x-api-key", IMMICH_KEY) for *_, h in immich_requests)
    assert all("x-api-key" not in h for *_, h in runpod_requests)
    captured = capsys.readouterr()
    output = captured.out + captured.err + (tmp_path / "state" / "router.json").read_text()
    assert "HTTP 400" in output and "HTTP 503" in output
    assert IMMICH_KEY not in output and RUNPOD_KEY not in output


def lb_endpoint(endpoint_id: str) -> dict:
    """A load-balancing endpoint as RunPod v2 returns it (idle timeout 60 s)."""
    return {"id": endpoint_id, "name": "immich-ml", "type": "LOAD_BALANCER", "image": "immich-ml:cuda", "args": "",
            "disk": 20, "ports": ["3003/http"], "env": {}, "registry": None,
            "gpu": {"pools": ["AMPERE_48"], "count": 1, "allowedCudaVersions": [], "minCudaVersion": "12.2"},
            "workers": {"min": 0, "max": 2, "idleTimeout": 60}, "scaling": {"type": "REQUEST_COUNT", "requestCount": 6},
            "dataCenterIds": [], "networkVolumes": [], "timeout": 300000, "flashboot": "FLASHBOOT",
            "requestUrls": runpod_api._request_urls(endpoint_id, "LOAD_BALANCER"), "createdAt": "2026-12-01T00:00:00Z"}


def test_runpod_client_against_the_contract_fake(tmp_path):
    """The PATCH the router sends is one the RunPod v2 contract accepts, and changes only the idle timeout."""
    with runpod_api.FakeRunpod(api_key=RUNPOD_KEY) as api:
        api.endpoints["ep1"] = lb_endpoint("ep1")
        client = router.RunpodClient(api.url, key_file(tmp_path, "runpod.key", RUNPOD_KEY), "ep1")
        client.set_idle_timeout(5)
        assert api.endpoints["ep1"]["workers"] == {"min": 0, "max": 2, "idleTimeout": 5}
        api.fail_next(503)
        with pytest.raises(router.RouterError) as error:
            client.set_idle_timeout(60)
        assert str(error.value) == "runpod: PATCH /serverless/ep1 -> HTTP 503"
        wrong = router.RunpodClient(api.url, key_file(tmp_path, "other.key", "rpa_wrong"), "ep1")
        with pytest.raises(router.RouterError, match="HTTP 401"):
            wrong.set_idle_timeout(60)
        assert api.endpoints["ep1"]["workers"]["idleTimeout"] == 5
        assert [(e["method"], e["path"], e["body"]) for e in api.log] == [
            ("PATCH", "/v2/serverless/ep1", {"workers": {"idleTimeout": s}}) for s in (5, 60, 60)]
        assert api.violations == [] and api.response_problems == []


def env_file(tmp_path: Path, **settings: str) -> str:
    path = tmp_path / "guard.env"
    path.write_text("# Managed by selfhost.immich\n" + "".join(f"{k}={v}\n" for k, v in settings.items()))
    path.chmod(0o600)
    return str(path)


def test_runpod_client_from_the_guard_env_file(tmp_path):
    """The role points the router at the workers guard's env file: URL, key and endpoint id come from there."""
    with runpod_api.FakeRunpod(api_key=RUNPOD_KEY) as api:
        api.endpoints["ep9"] = lb_endpoint("ep9")
        path = env_file(tmp_path, RUNPOD_API_URL=api.url, RUNPOD_API_ALLOW_HTTP="false", RUNPOD_ENDPOINT_ID="ep9",
                        RUNPOD_WORKERS_MAX="2", RUNPOD_API_KEY=RUNPOD_KEY)
        router.RunpodClient.from_env_file(path).set_idle_timeout(7)
        assert api.endpoints["ep9"]["workers"]["idleTimeout"] == 7
        assert [(e["method"], e["path"]) for e in api.log] == [("PATCH", "/v2/serverless/ep9")]


@pytest.mark.parametrize(("settings", "message"), [
    ({"RUNPOD_API_URL": "https://api.runpod.io/v2", "RUNPOD_ENDPOINT_ID": "ep1"}, "lack RUNPOD_API_KEY"),
    ({"RUNPOD_API_URL": "https://api.runpod.io/v2", "RUNPOD_ENDPOINT_ID": "ep/1", "RUNPOD_API_KEY": RUNPOD_KEY},
     "RUNPOD_ENDPOINT_ID in .* must be"),
    ({"RUNPOD_API_URL": "http://api.example.com/v2", "RUNPOD_ENDPOINT_ID": "ep1", "RUNPOD_API_KEY": RUNPOD_KEY},
     "plain http://"),
])
def test_runpod_env_file_errors_never_hold_the_key(tmp_path, settings, message):
    with pytest.raises(router.RouterError, match=message) as error:
        router.RunpodClient.from_env_file(env_file(tmp_path, **settings))
    assert RUNPOD_KEY not in str(error.value)


def test_immich_unreachable_through_run_once(tmp_path, capsys):
    with recording_server(lambda m, p, b: (200, {})) as (url, _):
        pass  # the server is gone: its port refuses connections
    config = files_config(tmp_path, immich_url=url, immich_api_key_file=key_file(tmp_path, "k", IMMICH_KEY))
    client = router.ImmichClient(url, config.immich_api_key_file)
    assert router.run_once(config, at(0), client, None) == 0
    state = json.loads((tmp_path / "state" / "router.json").read_text())
    assert state["mode"] == "idle" and state["backlog"] is None and "GET /api/queues" in state["immich_error"]
    out = capsys.readouterr().out
    assert "immich unreachable, no change (mode idle)" in out and IMMICH_KEY not in out


def test_immich_http_error_names_status_not_key(tmp_path):
    with recording_server(lambda m, p, b: (401, {"message": f"Invalid API key {IMMICH_KEY}"})) as (url, _):
        client = router.ImmichClient(url, key_file(tmp_path, "k", IMMICH_KEY))
        with pytest.raises(router.RouterError) as error:
            client.queues()
    assert str(error.value) == "immich: GET /api/queues -> HTTP 401"


# -- config and --status -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    ({"burst_treshold": 5}, "unknown config keys: burst_treshold"),
    ({"burst_threshold": "50"}, "burst_threshold must be a whole number"),
    ({"release_time": "3:00"}, "release_time must be HH:MM"),
    ({"release_time": "03:00\n"}, "release_time must be HH:MM"),
    ({"burst_idle_timeout": 0}, "between 1 and 3600"),
    ({"runpod_endpoint_id": "ep/1", "runpod_api_key_file": "/k"}, "runpod_endpoint_id must be"),
    ({"runpod_endpoint_id": "ep1"}, "runpod_api_key_file is required"),
    ({"runpod_endpoint_id": "ep1", "runpod_api_key_file": "/k", "runpod_api_url": "http://api.example.com/v2"},
     "plain http://"),
    ({"local_ml": "false"}, "local_ml must be true or false"),
    ({"release_within_days": 0}, "release_within_days must be between 1 and 30"),
    ({"runpod_env_file": "/etc/g.env", "runpod_endpoint_id": "ep1"}, "runpod_env_file replaces"),
    ({"runpod_env_file": "g.env"}, "runpod_env_file must be an absolute path"),
])
def test_bad_config_is_refused(raw, message):
    with pytest.raises(router.RouterError, match=message):
        router.config_from_dict(raw)


def test_main_bad_config_exits_2(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{"hold_seconds": -1}')
    assert router.main(["--config", str(path)]) == 2
    assert "hold_seconds must be >= 0" in capsys.readouterr().err


def test_status_json(tmp_path, capsys):
    config_path = tmp_path / "c.json"
    config_path.write_text(json.dumps({"mode_file": str(tmp_path / "m.yml"), "state_file": str(tmp_path / "s.json")}))
    config = router.load_config(str(config_path))
    router.run_once(config, at(0), FakeImmich(queues_with({"ocr": 77})), None)
    capsys.readouterr()
    assert router.main(["--config", str(config_path), "--status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mode"] == "burst" and info["backlog"] == 77
    assert dt.datetime.fromisoformat(info["since"]) == at(0)
    assert router.main(["--config", str(config_path), "--status"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("mode        burst since ") and "backlog     77 ML jobs" in text


def test_the_script_runs_as_the_timer_runs_it(tmp_path):
    """python3 <script> --config <file>, as its systemd unit runs it: one decision, logged, the mode file written."""
    import subprocess

    with recording_server(lambda m, p, b: (200, queue_list({"faceDetection": 60}))) as (url, requests):
        config = {"immich_url": url, "immich_api_key_file": key_file(tmp_path, "immich.key", IMMICH_KEY),
                  "mode_file": str(tmp_path / "dynamic" / "runpod-ml-mode.yml"),
                  "state_file": str(tmp_path / "lib" / "state.json")}
        (tmp_path / "dynamic").mkdir()
        (tmp_path / "c.json").write_text(json.dumps(config))
        result = subprocess.run([sys.executable, str(SCRIPT), "--config", str(tmp_path / "c.json")],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "mode idle -> burst: backlog 60 (threshold 50)" in result.stdout
    assert IMMICH_KEY not in result.stdout + result.stderr
    assert router.mode_in_file((tmp_path / "dynamic" / "runpod-ml-mode.yml").read_text(),
                               router.config_from_dict(config)) == "burst"
    assert oct((tmp_path / "lib" / "state.json").stat().st_mode & 0o777) == "0o600"
    assert [(m, p) for m, p, _, _ in requests] == [("GET", "/api/queues")]
    assert [f.name for f in (tmp_path / "dynamic").iterdir()] == ["runpod-ml-mode.yml"]  # no temp file left
