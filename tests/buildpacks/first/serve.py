import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

def read(name):
    try:
        return open(name).read().strip()
    except OSError:
        return None

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "build_count": read("build-count"),
            "greeting": read("greeting"),
            "greeting_in_env": read("greeting-in-env"),
            "env_files": (read("env-files") or "").split(),
            "from_first": read("from-first"),
            "from_profile": os.environ.get("FROM_PROFILE"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

HTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
