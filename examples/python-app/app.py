#!/usr/bin/env python3
"""A `web` process using a pip-installed package (`greeting`, from requirements.txt)."""

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import greeting

VERSION = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")).read().strip()


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("%s (version %s)\n" % (greeting.hello(os.environ.get("ZEROKU_APP", "you")), VERSION)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))


server = ThreadingHTTPServer(("", int(os.environ["PORT"])), App)
signal.signal(signal.SIGTERM, lambda *_: (server.server_close(), sys.exit(0)))
server.serve_forever()
