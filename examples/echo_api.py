#!/usr/bin/env python3
"""A stand-in for the API you protect: it answers every request with JSON describing what
reached it (method, path, the X-Sts-Broker-* identity headers the gate or nginx added, the
body's length and SHA-256). Standard library only.

Usage: python3 echo_api.py [PORT]   (default 9000; 0 picks a free port, printed on start)
"""
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "method": self.command,
            "path": self.path,
            "identity": {
                name.lower(): value
                for name, value in self.headers.items()
                if name.lower().startswith("x-sts-broker-")
            },
            "body_bytes": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        data = (json.dumps(seen, indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    def log_message(self, fmt, *args):
        sys.stderr.write("echo_api: " + (fmt % args) + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = ThreadingHTTPServer(("127.0.0.1", port), Echo)
    print(f"echo_api listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
