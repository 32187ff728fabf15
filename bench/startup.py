#!/usr/bin/env python3
"""Time from process start to the first 200 from GET /.callout/ready.

Usage: startup.py CALLOUT_BINARY CONFIG PORT RUNS CPU

Starts `callout serve --config CONFIG` RUNS times (pinned to CPU), polls the ready
endpoint every 0.5 ms over a fresh connection, stops the process with SIGTERM, and prints
`STARTUP median_ms=... min_ms=... max_ms=... runs=...`. Standard library only.
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /.callout/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def main():
    binary, config, port, runs, cpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    samples = []
    for _ in range(runs):
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [binary, "serve", "--config", config],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        ok = False
        while time.monotonic() - t0 < 30:
            if ready(port):
                ok = True
                break
            if proc.poll() is not None:
                break
            time.sleep(0.0005)
        elapsed = (time.monotonic() - t0) * 1000
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not ok:
            print(f"STARTUP failed exit={proc.returncode}", flush=True)
            sys.exit(1)
        samples.append(elapsed)
        time.sleep(0.1)  # let the port go
    print(
        f"STARTUP median_ms={statistics.median(samples):.1f} min_ms={min(samples):.1f} "
        f"max_ms={max(samples):.1f} runs={len(samples)}",
        flush=True,
    )


if __name__ == "__main__":
    main()
