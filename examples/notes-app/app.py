"""Notes in PostgreSQL, visits in Redis: see README.md."""
import http.server
import os
import subprocess
import urllib.parse


def parts(var):
    """(env for the client, host, port, user, database) of the URL in $var, or None."""
    url = os.environ.get(var)
    if not url:
        return None
    u = urllib.parse.urlsplit(url)
    return u.password or "", u.hostname, str(u.port), u.username or "", u.path.lstrip("/")


def sql(query):
    """Runs one SQL statement with psql; its output, unaligned."""
    p = parts("DATABASE_URL")
    if p is None:
        raise LookupError("no database attached: zeroku addons:create postgres")
    password, host, port, user, db = p
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", user, "-d", db],
        input=query, env=env, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout.strip()


def visits():
    """INCR visits in Redis; None without a REDIS_URL."""
    p = parts("REDIS_URL")
    if p is None:
        return None
    password, host, port, _, _ = p
    env = dict(os.environ, REDISCLI_AUTH=password)
    out = subprocess.run(["redis-cli", "--no-auth-warning", "-h", host, "-p", port, "INCR", "visits"],
                         env=env, capture_output=True, text=True, timeout=10)
    return out.stdout.strip() if out.returncode == 0 else "error: " + out.stderr.strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, code, text):
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def guarded(self, f):
        try:
            self.answer(200, f())
        except LookupError as e:
            self.answer(503, str(e))
        except Exception as e:  # the database's own words, for the user
            self.answer(500, "database error: %s" % e)

    def do_GET(self):
        if self.path == "/notes":
            self.guarded(lambda: sql("SELECT id || ' ' || body FROM notes ORDER BY id"))
        else:
            self.guarded(lambda: "notes: %s, visits: %s" % (sql("SELECT count(*) FROM notes"), visits()))

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        quoted = "'" + body.replace("'", "''") + "'"
        self.guarded(lambda: sql("INSERT INTO notes (body) VALUES (%s) RETURNING id" % quoted))

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


if __name__ == "__main__":
    if os.environ.get("DATABASE_URL"):
        sql("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
    print("notes-app on port %s" % os.environ["PORT"], flush=True)
    http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
