#!/usr/bin/env python3
"""Open N keep-alive connections, send one request on each, then hold them idle.

Usage: idle_conns.py HOST PORT N PATH HOLD_SECONDS

Prints `READY open=... ok=... failed=... seconds=...` once every connection has had its
response (so the server's memory can be sampled with N idle connections), holds them for
HOLD_SECONDS, prints `HELD still_open=...` and closes them. Standard library only.
"""
import asyncio
import resource
import sys
import time


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1024
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise hard
            return
        except (ValueError, OSError):
            want = hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def one(host, port, path, gate, conns):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            ok = head.startswith(b"HTTP/1.1 2")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return False
        conns.append((reader, writer))
        return ok


async def main():
    host, port, n, path, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    raise_nofile(n)
    gate = asyncio.Semaphore(256)  # stay well inside the listen backlog
    conns = []
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(host, port, path, gate, conns) for _ in range(n)))
    ok = sum(results)
    print(f"READY open={len(conns)} ok={ok} failed={n - ok} seconds={time.monotonic() - t0:.2f}", flush=True)
    await asyncio.sleep(hold)
    still = sum(1 for reader, writer in conns if not reader.at_eof() and not writer.is_closing())
    print(f"HELD still_open={still}", flush=True)
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
