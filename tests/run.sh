#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run calls exactly this).
# Sets up the harness (packages, dockerd, venv, base images built in the background), then runs: ruff,
# ansible-lint (production profile), pytest (unit + functional tests against the API fakes + collection build),
# ansible-test sanity, and every Molecule scenario in molecule/ (those in SELFHOST_TRIXIE_SCENARIOS on Debian 13 too).
#
# The steps run on SELFHOST_TEST_JOBS workers (default 2, one per core here) that take the next step from one
# queue: the checks first (pytest's 8 minutes overlap the base-image builds), then the scenarios longest first,
# so the two lanes end together. Scenarios do not share containers, networks, ports or lab directories (each is
# named after its scenario), so two can run side by side on one dockerd. Each step logs to its own file, printed
# whole when the step ends; the summary lists the steps in queue order with their start offset and duration, and
# the end of every failed step's log is printed again just above it.
# SELFHOST_SCENARIOS="docker traefik lab faults" limits the scenarios (lab: the end-to-end step, faults: the fault
# injection on the lab); SELFHOST_SKIP_MOLECULE=1 skips them all; SELFHOST_SKIP_CHECKS=1 skips the checks (ruff,
# pytest, ansible-lint, sanity: CI runs them once, in a job of their own, and the scenarios in jobs of their own).
# SELFHOST_TEST_JOBS=1 runs everything in order. Exits non-zero if any step failed; the last line counts the steps.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# Base images build in the background while lint and the unit tests run; molecule waits for them. Only those the
# run uses: Debian 12 arm64 (every role's platform) and amd64 (stand-ins, the docker scenario's native half),
# Debian 13 amd64 (immich, site); Debian 13 arm64 only with SELFHOST_TRIXIE_SCENARIOS (its debootstrap under qemu
# costs ~20 CPU-minutes that the checks need).
if [[ -z "${SELFHOST_TEST_IMAGES:-}" ]]; then
  SELFHOST_TEST_IMAGES="bookworm-arm64 bookworm-amd64 trixie-amd64${SELFHOST_TRIXIE_SCENARIOS:+ trixie-arm64}"
fi
export SELFHOST_TEST_IMAGES
SELFHOST_IMAGES_IN_BACKGROUND=1 bash tests/harness/setup.sh || { echo "harness setup failed"; exit 1; }
runs=$(mktemp -d)
trap 'bash tests/harness/teardown.sh; rm -rf "$runs"' EXIT
# shellcheck disable=SC1091
source "${SELFHOST_VENV:-$repo/.venv}/bin/activate"
export ANSIBLE_COLLECTIONS_PATH="$repo/.collections"
export MOLECULE_GLOB="molecule/*/molecule.yml"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

names=() commands=()
queue() { names+=("$1"); shift; commands+=("$*"); }

if [[ "${SELFHOST_SKIP_CHECKS:-0}" != 1 ]]; then
  queue "ruff" ruff check plugins tests molecule benchmarks
  queue "pytest" pytest -p no:cacheprovider --durations=15 tests/unit tests/functional
  queue "ansible-lint" ansible-lint --offline
  queue "ansible-test sanity" bash tests/sanity/run.sh
  # The lowest ansible-core meta/runtime.yml declares: unit + functional tests and sanity in .venv-lowest.
  queue "ansible-core 2.17 (lowest)" bash tests/lowest.sh
fi
if [[ "${SELFHOST_SKIP_MOLECULE:-0}" != 1 ]]; then
  queue "base images" bash tests/harness/wait-images.sh
  # Longest first (fresh-machine minutes, stop 16: immich 18, restic 14, sshfs 14, lab 11, traefik 9, runpod 7,
  # docker 5, site 2); scenarios not named here follow in alphabetical order. `lab` is not a scenario: the end-to-end proof
  # (tests/e2e: the README's first command, tests/lab/up.sh, from nothing, checked from outside, run twice).
  # `faults` is not a scenario either: the fault-injection proof (tests/e2e/test_faults.py) on the lab the end-to-end
  # step keeps up for it (SELFHOST_LAB_KEEP=1 then; it removes the lab at its end), which saves bringing the lab up
  # again (~8 min). The two take turns on one lock, so either order works (a faults step first brings the lab up).
  order="immich restic sshfs_storagebox lab traefik runpod_endpoint faults docker site"
  all=$(cd molecule && ls -d -- */ | tr -d /)
  scenarios=${SELFHOST_SCENARIOS:-$order $(printf '%s\n' $all | grep -vxF -f <(printf '%s\n' $order))}
  lab_lock=/var/tmp/selfhost-immich/lab.lock keep_lab=0
  [[ " $scenarios " == *" faults "* ]] && keep_lab=1
  for scenario in $scenarios; do
    if [[ $scenario == lab ]]; then
      queue "lab end to end" bash tests/harness/wait-images.sh --quiet "&&" flock "$lab_lock" \
        env SELFHOST_LAB_KEEP="$keep_lab" pytest -p no:cacheprovider -v --durations=0 tests/e2e/test_lab.py
      continue
    fi
    if [[ $scenario == faults ]]; then
      queue "lab faults" bash tests/harness/wait-images.sh --quiet "&&" flock "$lab_lock" \
        pytest -p no:cacheprovider -v tests/e2e/test_faults.py
      continue
    fi
    [[ -f "molecule/$scenario/molecule.yml" ]] || continue
    queue "molecule $scenario" bash tests/harness/wait-images.sh --quiet "&&" molecule test -s "$scenario"
  done
  # Debian 13 is the platform with Compose v2 in the distribution (Debian 12 has none). The immich scenario
  # converges the docker role on Debian 13 and runs its stack with Compose v2, so the docker scenario runs on
  # Debian 12 only by default (CI budget); SELFHOST_TRIXIE_SCENARIOS="docker ..." runs scenarios on Debian 13 too.
  for scenario in ${SELFHOST_TRIXIE_SCENARIOS-}; do
    queue "molecule $scenario (trixie)" bash tests/harness/wait-images.sh --quiet "&&" \
      env SELFHOST_TEST_SUITE=trixie molecule test -s "$scenario"
  done
fi

t_start=$(date +%s)
echo 0 >"$runs/next"
take() {  # the index of the next step in the queue, or nothing when it is empty
  flock "$runs/next" bash -c 'n=$(cat "$1"); echo $((n + 1)) >"$1"; echo "$n"' _ "$runs/next"
}
run() {
  local i=$1 worker=$2 t0 rc verdict
  t0=$(date +%s)
  # shellcheck disable=SC2086  # the command is a word list queued by this script
  { echo "=== ${names[i]}: ${commands[i]}   (worker $worker, +$((t0 - t_start))s)"; eval "${commands[i]}"; } \
    >"$runs/$i.log" 2>&1
  rc=$?
  verdict=PASS; ((rc == 0)) || verdict=FAIL
  printf '%s %4ss  +%4ss  %s\n' "$verdict" $(($(date +%s) - t0)) $((t0 - t_start)) "${names[i]}" >"$runs/$i.result"
  { echo; cat "$runs/$i.log"; echo "=== ${names[i]}: $verdict after $(($(date +%s) - t0))s"; } |
    flock "$runs/print" cat
}
worker() {
  local i
  while i=$(take) && ((i < ${#names[@]})); do run "$i" "$1"; done
}
pids=()
for w in $(seq "${SELFHOST_TEST_JOBS:-2}"); do worker "$w" & pids+=($!); done
wait "${pids[@]}"

passed=0 failed=0
for i in "${!names[@]}"; do
  if [[ -f "$runs/$i.result" ]] && grep -q '^PASS' "$runs/$i.result"; then passed=$((passed + 1)); continue; fi
  failed=$((failed + 1))
  echo; echo "=== end of the failed step's log: ${names[i]}"; tail -n 60 "$runs/$i.log" 2>/dev/null
done
echo; echo "=== summary (duration, start after the harness, step; $(($(date +%s) - t_start))s on ${SELFHOST_TEST_JOBS:-2} workers)"
for i in "${!names[@]}"; do cat "$runs/$i.result" 2>/dev/null || echo "FAIL  not run     ${names[i]}"; done
echo "steps: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
