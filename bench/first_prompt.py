"""`zeroku run -a APP sh` on a pseudo-terminal, N times: milliseconds from
starting the CLI until the remote shell's prompt shows, then `exit`.
Prints "p50 p90".   Usage: first_prompt.py ZEROKU_BIN APP N"""

import os
import pty
import select
import sys
import time


def once(binary, app):
    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary, [binary, "run", "-a", app, "sh"])
    seen, shown = b"", None
    while time.monotonic() - t0 < 60:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        seen += data
        if shown is None and b"$ " in seen:
            shown = time.monotonic() - t0
            os.write(fd, b"exit\r")
    os.waitpid(pid, 0)
    if shown is None:
        sys.exit("no prompt from zeroku run -a %s sh; it showed %r" % (app, seen[-300:]))
    return shown * 1000


def main():
    binary, app, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    times = sorted(once(binary, app) for _ in range(n))
    print(int(times[len(times) // 2]), int(times[min(len(times) - 1, int(0.9 * len(times)))]))


main()
