#!/usr/bin/env bash
# ansible-test sanity of the collection, without Docker and without ci-files.testing.ansible.com:
# - ansible-test wants the collection at .../ansible_collections/selfhost/immich as a real directory outside any
#   git work tree that ignores it, so the checkout's files (tracked and new, not ignored) are copied to a temporary
#   directory first;
# - each test's venv gets its requirements from the package index; the pip bootstrap script ansible-test would
#   download is replaced by tests/sanity/get_pip.py (in a HOME of its own, so nothing outside .cache/ is touched).
# pylint runs on the collection's Python (plugins/) and the API fakes; the tests' own style is ruff's job.
# SELFHOST_SANITY_TESTS overrides the tests run on the whole tree (default: those below, which work offline).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${SELFHOST_SANITY_WORK:-$repo/.cache/sanity}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tree=$scratch/ansible_collections/selfhost/immich
tests=${SELFHOST_SANITY_TESTS:-"validate-modules import yamllint pep8 compile ansible-doc runtime-metadata ignores \
  action-plugin-docs empty-init line-endings no-assert no-get-exception no-illegal-filenames no-smart-quotes \
  replace-urlopen shebang symlinks use-argspec-type-path use-compat-six"}

mkdir -p "$tree"
(cd "$repo" && git ls-files -co --exclude-standard -z | grep -zv '^\.collections/' |
  xargs -0 -I{} sh -c 'if test -e "{}"; then printf "%s\0" "{}"; fi' | tar --null -cf - -T -) | tar -xf - -C "$tree"

# The pip version this ansible-test bootstraps: pinned in _data/requirements/ansible-test.txt (2.19) or in
# _internal/python_requirements.py (2.17, 2.18).
pip_version=$(python -c 'import pathlib, re, ansible_test as a
root = pathlib.Path(a.__file__).parent
pin = root / "_data/requirements/ansible-test.txt"
text = pin.read_text() if pin.exists() else ""
found = [l.split("==")[1] for l in text.splitlines() if l.startswith("pip==")]
found += re.findall(r"pip=.([0-9.]+).", (root / "_internal/python_requirements.py").read_text())
print(found[0] if found else "24.2")' 2>/dev/null || echo 24.2)
mkdir -p "$work/home/.ansible/test/cache"
cp "$repo/tests/sanity/get_pip.py" "$work/home/.ansible/test/cache/get_pip_${pip_version//./_}.py"

args=()
for test in $tests; do args+=(--test "$test"); done
cd "$tree"
export HOME=$work/home
ansible-test sanity --python "${SELFHOST_SANITY_PYTHON:-3.11}" --color no "${args[@]}"
ansible-test sanity --python "${SELFHOST_SANITY_PYTHON:-3.11}" --color no --test pylint plugins/ tests/fakes/
