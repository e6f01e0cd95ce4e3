"""tests/lab/photos.py (the fault proof's photos) writes valid JPEGs with distinct content and EXIF dates.

The files are read back the way a decoder reads them: the segments, the Exif dates, and the entropy-coded scan
decoded with the file's own Huffman tables until every 8x8 block is read and nothing but padding is left;
`djpeg` (libjpeg-turbo) decodes them too where it is installed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("lab_photos", REPO / "tests" / "lab" / "photos.py")
photos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(photos)


def segments(data: bytes) -> tuple[dict[int, list[bytes]], bytes]:
    """marker -> payloads, and the entropy-coded data after SOS (up to EOI)."""
    assert data[:2] == b"\xff\xd8", "no SOI"
    found: dict[int, list[bytes]] = {}
    at = 2
    while True:
        assert data[at] == 0xFF, f"no marker at {at}"
        marker = data[at + 1]
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        found.setdefault(marker, []).append(data[at + 4:at + 2 + length])
        at += 2 + length
        if marker == 0xDA:
            assert data[-2:] == b"\xff\xd9", "no EOI"
            return found, data[at:-2]


def huffman(payload: bytes) -> dict[int, dict[tuple[int, int], int]]:
    """DHT payload -> {class/id: {(length, code): symbol}} with canonical codes (JPEG Annex C)."""
    tables, at = {}, 0
    while at < len(payload):
        key, counts = payload[at], payload[at + 1:at + 17]
        symbols = iter(payload[at + 17:at + 17 + sum(counts)])
        code, table = 0, {}
        for length, count in enumerate(counts, start=1):
            for _ in range(count):
                table[(length, code)] = next(symbols)
                code += 1
            code <<= 1
        tables[key] = table
        at += 17 + sum(counts)
    return tables


def decode_blocks(scan: bytes, dc: dict, ac: dict) -> int:
    data = scan.replace(b"\xff\x00", b"\xff")
    bits = "".join(f"{byte:08b}" for byte in data)
    at = blocks = 0

    def symbol(table: dict) -> int:
        nonlocal at
        for length in range(1, 17):
            key = (length, int(bits[at:at + length], 2))
            if key in table:
                at += length
                return table[key]
        raise AssertionError(f"no Huffman code at bit {at} (block {blocks})")

    while len(bits) - at >= 8 or "0" in bits[at:]:
        size = symbol(dc)
        at += size
        k = 1
        while k < 64:
            rs = symbol(ac)
            if rs == 0x00:
                break
            k += (rs >> 4) + 1
            at += rs & 0x0F
        assert k <= 64, f"block {blocks} has more than 64 coefficients"
        blocks += 1
    assert set(bits[at:]) <= {"1"}, "the scan does not end with padding"
    return blocks


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    directory = tmp_path_factory.mktemp("photos")
    return photos.generate(directory, 6, "unit", width=96, height=64)


def test_each_file_is_a_whole_baseline_jpeg(made):
    for path in made:
        found, scan = segments(path.read_bytes())
        precision, height, width, components = struct.unpack(">BHHB", found[0xC0][0][:6])
        assert (precision, width, height, components) == (8, 96, 64, 1)
        tables = huffman(b"".join(found[0xC4]))
        assert decode_blocks(scan, tables[0x00], tables[0x10]) == (96 // 8) * (64 // 8)


def test_each_file_has_its_own_exif_date_and_mtime_and_its_own_content(made):
    dates = []
    for path in made:
        found, _ = segments(path.read_bytes())
        app1 = found[0xE1][0]
        assert app1.startswith(b"Exif\0\0MM\0\x2a")
        # DateTime, DateTimeOriginal, DateTimeDigitized: one date, three times
        stamps = re.findall(rb"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d\0", app1)
        assert len(stamps) == 3 and len(set(stamps)) == 1, stamps
        taken = dt.datetime.strptime(stamps[0][:-1].decode(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.UTC)
        assert path.stat().st_mtime == taken.timestamp()
        dates.append(taken)
    assert len(set(dates)) == len(made)
    scans = {hashlib.sha256(segments(path.read_bytes())[1]).hexdigest() for path in made}
    assert len(scans) == len(made)  # the pictures differ, not only their metadata


def test_the_same_seed_makes_the_same_files_and_another_seed_others(made, tmp_path):
    again = photos.generate(tmp_path / "a", 6, "unit", width=96, height=64)
    other = photos.generate(tmp_path / "b", 6, "other", width=96, height=64)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in made]
    assert not {hashlib.sha256(p.read_bytes()).digest() for p in other} & {
        hashlib.sha256(p.read_bytes()).digest() for p in made}


@pytest.mark.skipif(shutil.which("djpeg") is None, reason="djpeg (libjpeg-turbo-progs) is not installed")
def test_libjpeg_decodes_them_without_a_warning(made):
    for path in made:
        result = subprocess.run(["djpeg", "-pnm", str(path)], capture_output=True, check=False)
        assert result.returncode == 0 and result.stderr == b"", result.stderr
        assert result.stdout.startswith(b"P5\n96 64\n255\n")
