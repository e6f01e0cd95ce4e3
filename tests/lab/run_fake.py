#!/usr/bin/env python3
"""Start one of the spec-validating API fakes of tests/fakes/ for the lab, with its secret read from a file.

    run_fake.py hetzner --host 172.18.0.1 --port 18091 --secret-file token --seed seed.json
    run_fake.py runpod  --host 172.18.0.1 --port 18092 --secret-file key

The fakes take their token or key as a command-line option; passed here inside the process, it never shows in
`ps`. Everything else is the fakes' own command line (tests/fakes/hetzner_api.py, tests/fakes/runpod_api.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parents[1] / "fakes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("api", choices=["hetzner", "runpod"])
    parser.add_argument("--secret-file", type=Path, required=True)
    args, rest = parser.parse_known_args()
    secret = args.secret_file.read_text().strip()
    sys.path.insert(0, str(FAKES))  # the fakes import their siblings as top-level modules when run as scripts
    if args.api == "hetzner":
        import hetzner_api

        hetzner_api.main([*rest, "--token", secret])
    else:
        import runpod_api

        runpod_api.main([*rest, "--api-key", secret])


if __name__ == "__main__":
    main()
