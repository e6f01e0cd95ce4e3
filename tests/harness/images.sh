#!/usr/bin/env bash
# The base images the harness builds and waits for, one <suite>-<arch> per line: SELFHOST_TEST_IMAGES if set,
# else every SELFHOST_TEST_SUITES (default "bookworm trixie") x SELFHOST_TEST_ARCHES (default "arm64 amd64").
set -euo pipefail
# shellcheck disable=SC2086  # a word list
if [[ -n "${SELFHOST_TEST_IMAGES:-}" ]]; then printf '%s\n' $SELFHOST_TEST_IMAGES; exit 0; fi
for suite in ${SELFHOST_TEST_SUITES:-bookworm trixie}; do
  for arch in ${SELFHOST_TEST_ARCHES:-arm64 amd64}; do echo "$suite-$arch"; done
done
