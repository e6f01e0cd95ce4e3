#!/usr/bin/env python3
"""site.yml on the lab: the first converge of a fresh server against a no-op re-run, with their ratio.

    python3 benchmarks/site/bench.py [--keep]

Removes any lab (`tests/lab/up.sh --down`), brings it up from nothing (`up.sh`: the stand-ins, a fresh server,
site.yml, the lab's use), then runs `up.sh` again, whose site.yml must report changed=0. Both runs have Ansible's
profile_tasks and timer callbacks on; the figures come from $LAB_DIR/logs/site.log of each run:
  - site.yml's wall time (timer), changed/ok/skipped of the server, and the ratio no-op / first (goal <= 0.15);
  - tasks per role (the `TASK [selfhost.immich.<role> : ...]` headers, skipped ones included);
  - the 10 slowest tasks of each run (profile_tasks).
up.sh's own stages (harness, stand-ins, check) are timed separately and are not part of the ratio. --keep leaves
the lab up (else `up.sh --down` at the end). Needs what up.sh needs (root, dockerd, the base images).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("LAB_DIR", "/var/tmp/selfhost-immich/lab"))
SERVER = "immich-lab"
TIMER = re.compile(r"Playbook run took (\d+) days, (\d+) hours, (\d+) minutes, (\d+) seconds")
# profile_tasks' summary lines: "role : task name ---- 12.34s"
PROFILE = re.compile(r"^(.+?) -{3,} (\d+\.\d+)s$", re.M)


def up(*args: str) -> tuple[float, str]:
    env = dict(os.environ, LAB_DIR=str(LAB_DIR), PROFILE_TASKS_TASK_OUTPUT_LIMIT="10",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks,ansible.posix.timer")
    started = time.monotonic()
    result = subprocess.run(["bash", str(REPO / "tests/lab/up.sh"), *args], cwd=REPO, env=env, capture_output=True,
                            text=True, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        output = result.stdout[-4000:] + result.stderr[-4000:]
        sys.exit(f"up.sh {' '.join(args)} failed ({result.returncode}):\n{output}")
    return seconds, (LAB_DIR / "logs" / "site.log").read_text() if not args else ""


def summary(log: str) -> dict:
    took = TIMER.search(log)
    if not took:
        sys.exit("site.log has no timer line: is ansible.posix.timer available?")
    days, hours, minutes, seconds = map(int, took.groups())
    recap = re.search(rf"^{SERVER}\s+:\s+(.*)$", log, re.M)
    counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))} if recap else {}
    roles = collections.Counter(re.findall(r"^TASK \[selfhost\.immich\.(\w+) : ", log, re.M))
    slowest = PROFILE.findall(log[log.rfind("PLAY RECAP"):])[:10]
    return {"seconds": ((days * 24 + hours) * 60 + minutes) * 60 + seconds, "recap": counters, "roles": roles,
            "slowest": slowest}


def show(title: str, run: dict, total: float) -> None:
    recap = run["recap"]
    print(f"\n{title}: site.yml {run['seconds']} s (whole up.sh {total:.0f} s); {SERVER}: "
          f"changed={recap.get('changed')} ok={recap.get('ok')} skipped={recap.get('skipped')} "
          f"failed={recap.get('failed')}")
    print("  tasks per role: " + ", ".join(f"{role} {n}" for role, n in sorted(run["roles"].items())))
    print("  10 slowest tasks:")
    for name, seconds in run["slowest"]:
        print(f"    {float(seconds):7.1f} s  {name.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    up("--down")
    first_total, first_log = up()
    noop_total, noop_log = up()
    first, noop = summary(first_log), summary(noop_log)
    show("first converge (fresh server)", first, first_total)
    show("no-op re-run", noop, noop_total)
    ratio = noop["seconds"] / first["seconds"]
    verdict = "meets" if ratio <= 0.15 and noop["recap"].get("changed") == 0 else "MISSES"
    print(f"\nratio no-op / first = {noop['seconds']} / {first['seconds']} = {ratio:.2f} ({verdict} the goal <= 0.15 "
          f"with changed=0)")
    if not args.keep:
        up("--down")


if __name__ == "__main__":
    main()
