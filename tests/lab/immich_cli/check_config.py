#!/usr/bin/env python3
"""Type-check an IMMICH_CONFIG_FILE against the official @immich/sdk config DTO with TypeScript.

Immich refuses to start on an unknown key in its config file. The SDK's ``AdminConfigDto`` (generated from
the server's OpenAPI spec) lists every key; a config file sets any subset of them, so the file is checked
as a deep partial of it: ``tsc --noEmit`` fails on a misspelt key (excess property) or a wrong value type.

    check_config.py immich-config.yaml [--cli-dir /var/tmp/selfhost-immich/immich-cli]

``--cli-dir`` holds ``node_modules`` from this directory's package.json (@immich/sdk, typescript; npm
install it first). Exit status 0 = the file type-checks; otherwise tsc's errors are printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DEFAULT_CLI_DIR = Path("/var/tmp/selfhost-immich/immich-cli")
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "skipLibCheck": True,
        "module": "nodenext",
        "moduleResolution": "nodenext",
        "target": "es2022",
    },
    "files": ["config.ts"],
}
PROGRAM = """\
import type {{ AdminConfigDto }} from "@immich/sdk";

type DeepPartial<T> = {{
  [K in keyof T]?: T[K] extends (infer U)[] ? U[] : T[K] extends object ? DeepPartial<T[K]> : T[K];
}};

// The rendered IMMICH_CONFIG_FILE, as an object literal: excess-property checks catch a misspelt key.
export const config: DeepPartial<AdminConfigDto> = {config};
"""


def check(config: object, cli_dir: Path) -> subprocess.CompletedProcess:
    """Run tsc on the config; the completed process carries tsc's output."""
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work)
        (directory / "node_modules").symlink_to(cli_dir / "node_modules")
        (directory / "package.json").write_text('{"type": "module"}\n')
        (directory / "tsconfig.json").write_text(json.dumps(TSCONFIG))
        (directory / "config.ts").write_text(PROGRAM.format(config=json.dumps(config, indent=2)))
        tsc = cli_dir / "node_modules" / "typescript" / "bin" / "tsc"
        return subprocess.run(["node", str(tsc), "-p", str(directory)], capture_output=True, text=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="the config file (YAML or JSON)")
    parser.add_argument("--cli-dir", type=Path, default=DEFAULT_CLI_DIR)
    args = parser.parse_args()
    result = check(yaml.safe_load(args.config.read_text()), args.cli_dir)
    sys.stdout.write(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
