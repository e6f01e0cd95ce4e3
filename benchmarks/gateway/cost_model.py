#!/usr/bin/env python3
"""The cost model of docs/ml-cost-model.md: GPU-seconds and dollars per 100-photo burst on a RunPod serverless
worker that scales to zero, for the role's idle timeout, next to the seed design's estimates.

    python benchmarks/gateway/cost_model.py [--idle-timeout 60] [--cold-start 30] [--price 0.00034]

RunPod bills a worker per second from its start to its full stop, idle timeout included (docs/decisions.md,
RunPod), so a burst costs: cold start (container start + model preload) + the span the photos keep it busy + the
idle tail.
Every input is an assumption stated in the doc; change them on the command line.
"""

from __future__ import annotations

import argparse

SEED_PRICE = 0.00058  # $/s the seed design used for the A40
SEED_SECONDS = {"batched (10 sessions x 13 s)": 130, "individual (100 x 10.3 s)": 1030}
MONTH_SECONDS = 30 * 24 * 3600


def burst_seconds(photos: int, cold_start: float, per_photo: float, gap: float, idle_timeout: float) -> float:
    """Billed seconds of one burst that a single worker serves without going idle in between.

    ML requests arrive paced by the uploads (``gap`` s apart) or, when the photos are already on the server,
    as fast as the worker serves them (``per_photo`` s each, Immich's three requests per photo).
    """
    return cold_start + photos * max(per_photo, gap) + idle_timeout


def isolated_seconds(photos: int, cold_start: float, per_photo: float, idle_timeout: float) -> float:
    """Billed seconds when every photo arrives alone, after the worker has scaled to zero."""
    return photos * (cold_start + per_photo + idle_timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--idle-timeout", type=float, default=60, help="runpod_endpoint_idle_timeout (s)")
    parser.add_argument("--cold-start", type=float, default=30, help="billed start-up incl. model preload (s)")
    parser.add_argument("--per-photo", type=float, default=0.3, help="worker busy time per photo (s)")
    parser.add_argument("--gap", type=float, default=1.2, help="upload interval per photo in a phone burst (s)")
    parser.add_argument("--price", type=float, default=0.00034, help="$/s of the GPU (A40/A6000 pool)")
    args = parser.parse_args()
    n, c, s, t, p = args.photos, args.cold_start, args.per_photo, args.idle_timeout, args.price

    print(f"Assumptions: {n} photos, cold start {c:g} s, {s:g} s of worker time per photo, upload gap {args.gap:g} s,"
          f" idle timeout {t:g} s, ${p}/s\n")
    rows = [
        ("phone burst (upload-paced)", burst_seconds(n, c, s, args.gap, t)),
        ("server-side burst (photos already uploaded)", burst_seconds(n, c, s, 0, t)),
        ("every photo alone (worst case)", isolated_seconds(n, c, s, t)),
    ]
    print(f"{'pattern':46} {'GPU-s':>8} {f'$ per {n}':>10}")
    for name, seconds in rows:
        print(f"{name:46} {seconds:8.0f} {seconds * p:10.4f}")
    print("\nSeed design's estimates (no cold start, no idle tail):")
    for name, seconds in SEED_SECONDS.items():
        print(f"  {name:34} {seconds:6d} s  x ${SEED_PRICE} = ${seconds * SEED_PRICE:.4f};"
              f"  at ${p}: ${seconds * p:.4f}")

    print(f"\nPhone burst, $ per {n} photos, by idle timeout (columns) and cold start (rows):")
    timeouts = (5, 30, 60, 120, 300)
    print(f"{'cold start':>10} " + " ".join(f"{f'T={x}s':>8}" for x in timeouts))
    for cold in (10, 30, 60):
        print(f"{cold:>9}s " + " ".join(f"{burst_seconds(n, cold, s, args.gap, x) * p:8.4f}" for x in timeouts))
    print(f"\nA worker kept awake all month (e.g. Immich's 30 s pings forwarded with T > 30 s): "
          f"{MONTH_SECONDS} s = ${MONTH_SECONDS * p:.2f}/month")


if __name__ == "__main__":
    main()
