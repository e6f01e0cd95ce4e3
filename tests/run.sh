#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run calls exactly this).
# Sets up the harness (packages, dockerd, venv, base images built in the background), then runs: ruff,
# ansible-lint (production profile), pytest (unit + functional tests against the API fakes + collection build),
# ansible-test sanity, and every Molecule scenario in molecule/ (those in SELFHOST_TRIXIE_SCENARIOS on Debian 13 too).
# SELFHOST_SCENARIOS="docker traefik" limits the scenarios; SELFHOST_SKIP_MOLECULE=1 skips them. Exits non-zero if any step failed; the last line counts the steps.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# Base images build in the background while lint and the unit tests run; molecule waits for them.
SELFHOST_IMAGES_IN_BACKGROUND=1 bash tests/harness/setup.sh || { echo "harness setup failed"; exit 1; }
trap 'bash tests/harness/teardown.sh' EXIT
# shellcheck disable=SC1091
source "${SELFHOST_VENV:-$repo/.venv}/bin/activate"
export ANSIBLE_COLLECTIONS_PATH="$repo/.collections"
export MOLECULE_GLOB="molecule/*/molecule.yml"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

passed=0 failed=0 report=()
step() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo; echo "=== $name: $*"
  if "$@"; then passed=$((passed + 1)); report+=("PASS $(printf '%4ss' $(( $(date +%s) - t0 ))) $name")
  else failed=$((failed + 1)); report+=("FAIL $(printf '%4ss' $(( $(date +%s) - t0 ))) $name"); fi
}

step "ruff" ruff check plugins tests molecule benchmarks
step "ansible-lint" ansible-lint --offline
step "pytest" pytest -p no:cacheprovider tests/unit tests/functional
step "ansible-test sanity" bash tests/sanity/run.sh
if [[ "${SELFHOST_SKIP_MOLECULE:-0}" != 1 ]]; then
  step "base images" bash tests/harness/wait-images.sh
  for scenario in ${SELFHOST_SCENARIOS:-$(cd molecule && ls -d -- */ | tr -d /)}; do
    [[ -f "molecule/$scenario/molecule.yml" ]] || continue
    step "molecule $scenario" molecule test -s "$scenario"
  done
  # Debian 13 is the platform with Compose v2 in the distribution (Debian 12 has none). The immich scenario
  # converges the docker role on Debian 13 and runs its stack with Compose v2, so the docker scenario runs on
  # Debian 12 only by default (CI budget); SELFHOST_TRIXIE_SCENARIOS="docker ..." runs scenarios on Debian 13 too.
  for scenario in ${SELFHOST_TRIXIE_SCENARIOS-}; do
    step "molecule $scenario (trixie)" env SELFHOST_TEST_SUITE=trixie molecule test -s "$scenario"
  done
fi

echo; echo "=== summary"
printf '%s\n' "${report[@]}"
echo "steps: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
