#!/usr/bin/env python3
"""Generate test photos: valid baseline JPEGs with distinct content and EXIF dates (standard library only).

    photos.py DIR --count 100 --seed faults-1 [--width 640 --height 480]

Each photo is a greyscale baseline JPEG (SOF0) whose 8x8 blocks carry coefficients drawn from the seed (a
different picture per photo and per seed), with an Exif APP1 segment holding DateTime, DateTimeOriginal and
DateTimeDigitized (a different date per photo); the file's mtime is that date too, as a camera's copy would
have it (the @immich/cli sends the mtime as fileCreatedAt). Written by hand because neither Pillow nor
ImageMagick is available on the controller or the lab host; `djpeg` and `exiftool` read the files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import struct
from pathlib import Path

ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
    21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60,
    61, 54, 47, 55, 62, 63,
]
QUANT = 8  # one step for every coefficient: the coefficients below are the quantized values
# Huffman tables of our own (any complete-prefix table is valid JPEG): DC categories 0-11 as 4-bit codes; the AC
# symbols (run << 4 | size, plus EOB 0x00 and ZRL 0xF0) as 8-bit codes. Canonical codes = the index.
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]
DC_CODES = {symbol: (index, 4) for index, symbol in enumerate(DC_SYMBOLS)}
AC_CODES = {symbol: (index, 8) for index, symbol in enumerate(AC_SYMBOLS)}


class Bits:
    def __init__(self) -> None:
        self.out = bytearray()
        self.value = 0
        self.count = 0

    def put(self, code: int, length: int) -> None:
        self.value = (self.value << length) | code
        self.count += length
        while self.count >= 8:
            self.count -= 8
            byte = (self.value >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)  # byte stuffing
        self.value &= (1 << self.count) - 1

    def flush(self) -> bytes:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)  # pad with ones
        return bytes(self.out)


def category(value: int) -> tuple[int, int]:
    """JPEG's (size, bits) of a coefficient: negative values are stored as value - 1 in size bits."""
    size = abs(value).bit_length()
    return size, (value if value >= 0 else value + (1 << size) - 1)


def segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload


def exif(taken: dt.datetime, description: str) -> bytes:
    """APP1 Exif: IFD0 (ImageDescription, DateTime, Exif IFD pointer) + Exif IFD (DateTimeOriginal/Digitized)."""
    stamp = taken.strftime("%Y:%m:%d %H:%M:%S").encode() + b"\0"
    text = description.encode()[:63] + b"\0"
    ifd0_at, ifd0_entries = 8, 3
    data_at = ifd0_at + 2 + 12 * ifd0_entries + 4
    exif_at = data_at + len(text) + len(stamp)
    exif_entries = 2
    exif_data_at = exif_at + 2 + 12 * exif_entries + 4
    ifd0 = struct.pack(">H", ifd0_entries)
    ifd0 += struct.pack(">HHII", 0x010E, 2, len(text), data_at)
    ifd0 += struct.pack(">HHII", 0x0132, 2, len(stamp), data_at + len(text))
    ifd0 += struct.pack(">HHII", 0x8769, 4, 1, exif_at) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", exif_entries)
    exif_ifd += struct.pack(">HHII", 0x9003, 2, len(stamp), exif_data_at)
    exif_ifd += struct.pack(">HHII", 0x9004, 2, len(stamp), exif_data_at + len(stamp)) + struct.pack(">I", 0)
    tiff = b"MM\0\x2a" + struct.pack(">I", ifd0_at) + ifd0 + text + stamp + exif_ifd + stamp + stamp
    return segment(0xE1, b"Exif\0\0" + tiff)


def jpeg(width: int, height: int, rng: random.Random, taken: dt.datetime, description: str) -> bytes:
    """A greyscale baseline JPEG: a smooth random gradient of block averages plus random texture per block."""
    blocks_x, blocks_y = (width + 7) // 8, (height + 7) // 8
    gx, gy, base = rng.uniform(-4, 4), rng.uniform(-4, 4), rng.randint(-40, 40)
    bits = Bits()
    previous_dc = 0
    for by in range(blocks_y):
        for bx in range(blocks_x):
            dc = max(-120, min(120, int(base + gx * bx + gy * by) + rng.randint(-6, 6)))
            size, value = category(dc - previous_dc)
            previous_dc = dc
            bits.put(*DC_CODES[size])
            if size:
                bits.put(value, size)
            run = 0
            for k in range(1, 64):
                coefficient = rng.randint(-12, 12) if k < 10 and rng.random() < 0.7 else 0
                if coefficient == 0:
                    run += 1
                    continue
                while run > 15:
                    bits.put(*AC_CODES[0xF0])
                    run -= 16
                size, value = category(coefficient)
                bits.put(*AC_CODES[(run << 4) | size])
                bits.put(value, size)
                run = 0
            if run:
                bits.put(*AC_CODES[0x00])
    dqt = b"\x00" + bytes([QUANT] * 64)  # 8-bit table 0, in zigzag order (all equal)
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    dht = b""
    for table_class, symbols, length in ((0x00, DC_SYMBOLS, 4), (0x10, AC_SYMBOLS, 8)):
        counts = [0] * 16
        counts[length - 1] = len(symbols)
        dht += bytes([table_class]) + bytes(counts) + bytes(symbols)
    sos = bytes([1, 1, 0x00, 0, 63, 0])
    return (b"\xff\xd8" + exif(taken, description) + segment(0xDB, dqt) + segment(0xC0, sof)
            + segment(0xC4, dht) + segment(0xDA, sos) + bits.flush() + b"\xff\xd9")


def generate(directory: Path, count: int, seed: str, width: int = 640, height: int = 480) -> list[Path]:
    """`count` photos named <seed>-NNN.jpg in directory; the same seed makes the same files."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2001, 1, 1) + dt.timedelta(days=rng.randrange(8000))
    paths = []
    for index in range(count):
        taken = start + dt.timedelta(minutes=index * 97 + rng.randrange(60), seconds=rng.randrange(60))
        path = directory / f"{seed}-{index:03d}.jpg"
        path.write_bytes(jpeg(width, height, rng, taken, f"selfhost-immich test photo {seed} #{index}"))
        epoch = taken.replace(tzinfo=dt.UTC).timestamp()
        os.utime(path, (epoch, epoch))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", default="photos")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    for path in generate(args.directory, args.count, args.seed, args.width, args.height):
        print(path)


if __name__ == "__main__":
    main()
