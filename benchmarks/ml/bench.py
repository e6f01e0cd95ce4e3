#!/usr/bin/env python3
"""What a month of Immich's machine learning costs on RunPod with the ML router: month-long upload traces replayed
through the router's real decision code (roles/immich/files/selfhost-immich-ml-router, `decide`).

    python3 benchmarks/ml/bench.py [--cpu-rate 20] [--gpu-rate 200] [--cold-start 30] [--threshold 50] ...

A simulated clock runs the month second by second (minutes with nothing queued, arriving or running are skipped
whole); the router decides once a minute, as its systemd timer does, and its actions are applied to the model:
- queues: every photo adds one job to each of smartSearch, faceDetection and ocr; a paused queue does not run;
- Immich sees the mode at its availability check (every 30 s) and sends ML work to RunPod in `burst` (and always
  when there is no local ML), else to the server's CPU container, which runs --cpu-rate photos a minute;
- RunPod: a worker starts when work reaches a stopped endpoint (a cold start of --cold-start s, billed), then runs
  --gpu-rate photos a minute and stops once it has had nothing to do for the endpoint's idle timeout (the router
  sets it: short in bursts); billed = per second from start to stop (cold start + work + idle timeout);
- uploads arrive one photo every --gap s within a session (a phone's backup; an import's pace is its own).
Not modelled: smart searches (in idle the CPU answers them; with local_ml false each one may wake a worker) and
requests lost to a cold start longer than RunPod's 2-minute hold (the router's missing run redoes them).
Prints one line per trace: billed GPU-seconds, $ at the 16 GB and 48 GB prices, cold starts, router switches.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import importlib.machinery
import importlib.util
import math
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROUTER = REPO / "roles" / "immich" / "files" / "selfhost-immich-ml-router"
PRICE_16GB = 0.00016  # $/s, A4000 / A4500 / RTX 4000 (RunPod flex, docs/ml-cost-model.md)
PRICE_48GB = 0.00034  # $/s, A6000 / A40 (the role's first pool)
START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
DAYS = 30
QUEUES = ("smartSearch", "faceDetection", "ocr")
CHECK_INTERVAL = 30  # Immich's machineLearning.availabilityChecks.interval (s)


def load_router():
    loader = importlib.machinery.SourceFileLoader("selfhost_immich_ml_router", str(ROUTER))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module
    loader.exec_module(module)
    return module


# -- traces: lists of (second of the month, photos) sessions -------------------------------------------------------


def trickle(rng: random.Random, photos: int, smallest: int, largest: int) -> list[tuple[int, int]]:
    """Sessions of smallest..largest photos at random daytime moments (08:00-22:00) until `photos` are uploaded."""
    sessions, left = [], photos
    while left:
        size = min(left, rng.randint(smallest, largest))
        second = rng.randrange(DAYS) * 86400 + rng.randrange(8 * 3600, 22 * 3600)
        sessions.append((second, size))
        left -= size
    return sorted(sessions)


def seed_trickle(rng: random.Random) -> list[tuple[int, int]]:
    """The seed's 100 photos a month, a few a day (1-5 per session)."""
    return trickle(rng, 100, 1, 5)


def heavy_month(rng: random.Random) -> list[tuple[int, int]]:
    """1,000 photos: sessions of 3-30 photos most days plus four weekend outings of 120 photos each."""
    outings = [((5 + 7 * week) * 86400 + 19 * 3600, 120) for week in range(4)]
    return sorted(trickle(rng, 520, 3, 30) + outings)


def big_import(rng: random.Random) -> list[tuple[int, int]]:
    """A 10,000-photo library uploaded on day 2 at 20:00, on top of the seed's trickle."""
    return sorted(seed_trickle(rng) + [(1 * 86400 + 20 * 3600, 10_000)])


# -- the model -------------------------------------------------------------------------------------------------------


class Month:
    def __init__(self, args, sessions, local_ml: bool, router=None, config=None, gap: float | None = None) -> None:
        self.args, self.router, self.config, self.local_ml = args, router, config, local_ml
        self.arrivals: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        for start, photos in sessions:
            pace = args.gap if gap is None or photos < 1000 else gap
            for i in range(photos):
                second = start + int(i * pace)
                self.arrivals[second // 60][second % 60] += 1
        self.pending = 0.0  # photos whose ML jobs are queued (each = one job per ML queue)
        self.paused: set[str] = set()
        self.mode, self.seen_mode = "idle", "idle"  # the router's mode, and Immich's view of it
        self.idle_timeout = args.normal_idle_timeout
        self.worker = None  # None = scaled to zero; else {"start", "ready", "last_work"}
        self.billed = self.cold_starts = self.gpu_photos = self.cpu_photos = 0.0
        self.state = router.initial_state() if router else None
        self.switches = 0
        self.busy = 0  # 1 when the CPU or a worker ran something in the last second

    def observation(self):
        # waiting + active: a photo in the works at this instant is an active job in each queue.
        backlog = math.ceil(self.pending - 1e-9) + self.busy
        queues = {name: self.router.QueueState(name, name in self.paused, backlog) for name in QUEUES}
        return self.router.Observation(queues, self.mode)

    def tick(self, now: dt.datetime) -> None:
        """One run of the router's timer: decide, then apply its actions to the model."""
        decision = self.router.decide(self.state, self.observation(), self.config, now)
        self.state = decision.state
        self.switches += sum(message.startswith("mode ") for message in decision.messages)
        for action in decision.actions:
            kind = action["kind"]
            if kind == "write_mode":
                self.mode = action["mode"]
            elif kind == "idle_timeout":
                self.idle_timeout = action["seconds"]
            elif kind == "set_queue":
                (self.paused.add if action["paused"] else self.paused.discard)(action["queue"])
                if not action["paused"]:
                    self.state["paused_by_us"] = [q for q in self.state["paused_by_us"] if q != action["queue"]]
            # start_missing: no job is lost in this model (cold start < RunPod's 2-minute hold): nothing to redo.
            self.state["pending"] = [a for a in self.state["pending"] if a != action]

    def second(self, t: int, arriving: int) -> None:
        args = self.args
        if t % CHECK_INTERVAL == 0:
            self.seen_mode = self.mode
        self.pending += arriving
        on_gpu = self.seen_mode == "burst" or not self.local_ml
        runnable = self.pending > 1e-9 and len(self.paused) < len(QUEUES)
        worker, self.busy = self.worker, 0
        if runnable and on_gpu:
            if worker is None:
                worker = self.worker = {"start": t, "ready": t + args.cold_start, "last_work": t}
                self.cold_starts += 1
            if t >= worker["ready"]:
                done = min(self.pending, args.gpu_rate / 60)
                self.pending -= done
                self.gpu_photos += done
                self.busy = 1
            worker["last_work"] = t + 1
        elif runnable:
            done = min(self.pending, args.cpu_rate / 60)
            self.pending -= done
            self.cpu_photos += done
            self.busy = 1
        if worker is not None and not (runnable and on_gpu) and t + 1 - worker["last_work"] >= self.idle_timeout:
            self.billed += t + 1 - worker["start"]
            self.worker = None

    def run(self) -> Month:
        for minute in range(DAYS * 24 * 60):
            if self.router:
                self.tick(START + dt.timedelta(minutes=minute))
            arrivals = self.arrivals.get(minute)
            if not arrivals and self.pending < 1e-9 and self.worker is None and not self.busy:
                self.seen_mode = self.mode  # a quiet minute: Immich has checked /ping twice
                continue
            for offset in range(60):
                self.second(minute * 60 + offset, arrivals[offset] if arrivals else 0)
        if self.worker is not None:
            self.billed += DAYS * 86400 - self.worker["start"]
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-rate", type=float, default=20, help="photos/min the server's CPU ML container runs")
    parser.add_argument("--gpu-rate", type=float, default=200, help="photos/min a RunPod worker runs (0.3 s each)")
    parser.add_argument("--cold-start", type=int, default=30, help="billed seconds before a worker serves")
    parser.add_argument("--gap", type=float, default=1.2, help="seconds between photos of a phone upload session")
    parser.add_argument("--import-gap", type=float, default=0.5, help="seconds between photos of the 10,000 import")
    parser.add_argument("--threshold", type=int, default=50, help="router burst_threshold (ML jobs)")
    parser.add_argument("--hold", type=int, default=600, help="router hold_seconds")
    parser.add_argument("--burst-idle-timeout", type=int, default=5)
    parser.add_argument("--normal-idle-timeout", type=int, default=60)
    parser.add_argument("--release-time", default="03:00", help="router release_time (local_ml false)")
    parser.add_argument("--release-within-days", type=int, default=3,
                        help="router release_within_days (local_ml false); 1 = every day with uploads")
    parser.add_argument("--seed", type=int, default=21, help="random seed of the traces")
    args = parser.parse_args()
    router = load_router()

    def config(local_ml: bool, within: int | None = None):
        return router.config_from_dict({
            "release_within_days": within or args.release_within_days,
            "local_ml": local_ml, "burst_threshold": args.threshold, "hold_seconds": args.hold,
            "burst_idle_timeout": args.burst_idle_timeout, "normal_idle_timeout": args.normal_idle_timeout,
            "release_time": args.release_time, "runpod_endpoint_id": "bench", "runpod_api_key_file": "/dev/null"})

    traces = [
        ("seed trickle, 100 photos/month", seed_trickle, True, None),
        ("heavy month, 1,000 photos", heavy_month, True, None),
        ("10,000-photo import (+ trickle)", big_import, True, None),
        ("stack_local_ml: false, release (within 3 days), 100 photos/month", seed_trickle, False, None),
        ("stack_local_ml: false, release (within 3 days), 1,000 photos", heavy_month, False, None),
        ("stack_local_ml: false, release every day, 100 photos/month", seed_trickle, False, 1),
    ]
    before = [("before (no router, RunPod only, T=60 s): seed trickle", seed_trickle),
              ("before (no router, RunPod only, T=60 s): heavy month", heavy_month)]
    print(f"Assumptions: CPU {args.cpu_rate:g} photos/min, RunPod {args.gpu_rate:g} photos/min after a "
          f"{args.cold_start} s cold start, phone uploads 1 photo/{args.gap:g} s, import 1 photo/{args.import_gap:g} s;"
          f"\nrouter: threshold {args.threshold} jobs, hold {args.hold} s, idle timeout {args.burst_idle_timeout} s in "
          f"bursts / {args.normal_idle_timeout} s otherwise, release {args.release_time} (within "
          f"{args.release_within_days} days); {DAYS}-day month, "
          f"seed {args.seed}.\n")
    header = (f"{'trace':66} {'GPU-s':>7} {'$ 16 GB':>8} {'$ 48 GB':>8} {'cold starts':>11} {'switches':>8} "
              f"{'photos on GPU':>13}")
    print(header)
    print("-" * len(header))
    for name, make, local_ml, within in traces:
        month = Month(args, make(random.Random(args.seed)), local_ml, router, config(local_ml, within),
                      args.import_gap).run()
        row(name, month)
    for name, make in before:
        month = Month(args, make(random.Random(args.seed)), False, gap=args.import_gap)
        month.mode = month.seen_mode = "burst"
        row(name, month.run())


def row(name: str, month: Month) -> None:
    seconds = month.billed
    print(f"{name:66} {seconds:7.0f} {f'${seconds * PRICE_16GB:.3f}':>8} {f'${seconds * PRICE_48GB:.3f}':>8} "
          f"{month.cold_starts:11.0f} {month.switches:8d} {month.gpu_photos:13.0f}", flush=True)


if __name__ == "__main__":
    main()
