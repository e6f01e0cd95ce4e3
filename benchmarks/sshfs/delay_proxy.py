#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction: latency without netem.

This kernel has no sch_netem, so `tc qdisc ... netem delay` is unavailable; the benchmark puts this proxy
between the SSHFS/SFTP client and the Storage Box stand-in instead. Each direction of each connection
has a reader thread (stamps chunks with their arrival time) and a writer thread (sends each chunk once
arrival + delay has passed), so the delay adds latency without capping the bandwidth-delay product.
time.sleep() uses clock_nanosleep: accurate to tens of microseconds, unlike asyncio's 1 ms timer.

    delay_proxy.py --listen 127.0.0.1:2223 --target box:23 --delay-ms 0.5   # ~1 ms added RTT
"""

from __future__ import annotations

import argparse
import queue
import socket
import threading
import time

CHUNK = 256 * 1024


def pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Copy src to dst, each chunk sent `delay` seconds after it was read."""
    chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def reader() -> None:
        try:
            while data := src.recv(CHUNK):
                chunks.put((time.monotonic() + delay, data))
        except OSError:
            pass
        chunks.put((0.0, b""))

    def writer() -> None:
        try:
            while True:
                due, data = chunks.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    for target in (reader, writer):
        threading.Thread(target=target, daemon=True).start()


def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    server = socket.create_server(listen, reuse_port=True)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(target)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pump(client, upstream, delay)
        pump(upstream, client, delay)


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=address, required=True, help="host:port to accept on")
    parser.add_argument("--target", type=address, required=True, help="host:port to forward to")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="one-way delay added in each direction")
    args = parser.parse_args()
    serve(args.listen, args.target, args.delay_ms / 1000)


if __name__ == "__main__":
    main()
