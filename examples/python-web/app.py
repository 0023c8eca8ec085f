#!/usr/bin/env python3
"""A `web` process: a stdlib HTTP server on $PORT answering
`Hello from <ZEROKU_INSTANCE>`. Exits cleanly on SIGTERM."""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INSTANCE = os.environ.get("ZEROKU_INSTANCE", "python-web")


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def _answer(self, with_body):
        body = ("Hello from %s\n" % INSTANCE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self._answer(True)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    port = int(os.environ.get("PORT", "5000"))
    host = os.environ.get("HOST", "0.0.0.0")
    server = ThreadingHTTPServer((host, port), Hello)
    server.daemon_threads = True

    def stop(*_):
        # shutdown() waits for serve_forever() to return: call it off the
        # main thread (which is the one running serve_forever()).
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("web %s listening on %s:%d" % (INSTANCE, host, port), flush=True)
    server.serve_forever(poll_interval=0.25)
    server.server_close()
    print("web %s: SIGTERM, exiting" % INSTANCE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
