#!/usr/bin/env bash
# The collection on the lowest ansible-core it declares (meta/runtime.yml: requires_ansible ">=2.17.0"): the unit
# and functional tests and ansible-test sanity, in .venv-lowest (tests/requirements-lowest.txt, built by
# tests/harness/setup.sh). site.yml --check --diff on the lab's converged server with the same ansible-core is
# part of the lab step (tests/e2e/test_lab.py). tests/run.sh runs this as the step "ansible-core 2.17 (lowest)".
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck disable=SC1091
source "${SELFHOST_VENV_LOWEST:-$repo/.venv-lowest}/bin/activate"
export ANSIBLE_COLLECTIONS_PATH=$repo/.collections
python -c "import ansible.release as r; print('ansible-core', r.__version__)"
pytest -p no:cacheprovider -q tests/unit tests/functional
SELFHOST_SANITY_WORK=$repo/.cache/sanity-lowest bash tests/sanity/run.sh
