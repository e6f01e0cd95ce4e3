#!/usr/bin/env python3
"""Check Immich config against the official @immich/sdk: a config file's keys and value types, or the key list.

Immich refuses to start on an unknown key in its config file. The SDK's ``AdminConfigDto`` (generated from
the server's OpenAPI spec) lists every key.

    check_config.py immich-config.yaml [--cli-dir DIR]   type-check a config file (tsc --noEmit): a config sets
                                                          any subset of the keys, so it is checked as a deep partial
                                                          of AdminConfigDto (a misspelt key or wrong type fails)
    check_config.py --keys [--write] [--cli-dir DIR]      compare roles/immich/files/config_keys.json (every leaf
                                                          path of AdminConfigDto, which the role and the server
                                                          double read) with the SDK; --write regenerates it
                                                          (run by hand after an SDK upgrade in package.json)

``--cli-dir`` holds ``node_modules`` from this directory's package.json (install.sh installs it there).
Exit status 0 = the file type-checks / the key list matches the SDK; otherwise the differences are printed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DEFAULT_CLI_DIR = Path("/var/tmp/selfhost-immich/immich-cli")
KEYS_FILE = Path(__file__).resolve().parents[3] / "roles" / "immich" / "files" / "config_keys.json"
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

// A config file is JSON/YAML: a string enum's members are written as their values ("client_secret_post").
type Plain<V> = V extends string ? `${{V}}` : V;
type DeepPartial<T> = {{
  [K in keyof T]?: T[K] extends (infer U)[] ? Plain<U>[] : T[K] extends object ? DeepPartial<T[K]> : Plain<T[K]>;
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


def sdk_keys(cli_dir: Path) -> dict:
    """The key file's content for the installed SDK: its version and every leaf path of AdminConfigDto, sorted."""
    sdk = cli_dir / "node_modules" / "@immich" / "sdk"
    # oazapfts' declarations: `export type Name = {` ... `};`, one field a line at four spaces (deeper lines belong
    # to inline object types); a field whose type is another AdminConfig* type is a section of the file.
    source = (sdk / "build" / "fetch-client.d.ts").read_text()
    types = {
        match.group(1): dict(re.findall(r'^    "?(\w+)"?\??: (.+);$', match.group(2), re.M))
        for match in re.finditer(r"^export type (\w+) = \{\n(.*?)^\};", source, re.S | re.M)
    }

    def walk(name: str, prefix: str) -> list[str]:
        paths = []
        for key, kind in types[name].items():
            is_section = kind in types and kind.startswith("AdminConfig")
            paths += walk(kind, f"{prefix}{key}.") if is_section else [prefix + key]
        return paths

    version = json.loads((sdk / "package.json").read_text())["version"]
    return {"sdk": f"@immich/sdk {version} AdminConfigDto", "paths": sorted(walk("AdminConfigDto", ""))}


def compare_keys(cli_dir: Path, write: bool) -> int:
    """0 if KEYS_FILE holds what the SDK says (after writing it, with write), else 1 with the differences."""
    want = sdk_keys(cli_dir)
    text = json.dumps(want, indent=1) + "\n"
    if write:
        KEYS_FILE.write_text(text)
        print(f"wrote {len(want['paths'])} keys of {want['sdk']} to {KEYS_FILE}")
        return 0
    have = json.loads(KEYS_FILE.read_text()) if KEYS_FILE.exists() else {"sdk": None, "paths": []}
    if have == want:
        return 0
    print(f"{KEYS_FILE} ({have['sdk']}) differs from the installed {want['sdk']}: run check_config.py --keys --write")
    for path in sorted(set(want["paths"]) - set(have["paths"])):
        print(f"  missing: {path}")
    for path in sorted(set(have["paths"]) - set(want["paths"])):
        print(f"  not in the SDK: {path}")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?", help="the config file (YAML or JSON) to type-check")
    parser.add_argument("--keys", action="store_true", help="compare the role's key list with the SDK")
    parser.add_argument("--write", action="store_true", help="with --keys: regenerate the key list")
    parser.add_argument("--cli-dir", type=Path, default=DEFAULT_CLI_DIR)
    args = parser.parse_args()
    if args.keys == (args.config is not None):
        parser.error("give a config file or --keys")
    if args.keys:
        return compare_keys(args.cli_dir, args.write)
    result = check(yaml.safe_load(args.config.read_text()), args.cli_dir)
    sys.stdout.write(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
