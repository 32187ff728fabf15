#!/usr/bin/env python3
"""A local OAuth 2.0 token endpoint for the benchmark (standard library only).

POST /token answers every client-credentials request with the same bearer token, so
callout's token cache is warm after one request and the benchmark measures forwarding,
not token fetching. GET /count tells how many token requests were served.

Usage: token_endpoint.py PORT   (listens on 127.0.0.1 only)
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps(
    {"access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600}
).encode()

_lock = threading.Lock()
_count = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global _count
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.split("?", 1)[0] != "/token":
            self._send(404, b'{"error":"not_found"}')
            return
        with _lock:
            _count += 1
        self._send(200, BODY)

    def do_GET(self):
        if self.path == "/count":
            self._send(200, str(_count).encode() + b"\n", "text/plain")
        else:
            self._send(404, b'{"error":"not_found"}')

    def log_message(self, fmt, *args):  # keep the benchmark's output clean
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18070
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"token endpoint on http://127.0.0.1:{port}/token", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
