"""Runs a command on a new pseudo-terminal, as a user's terminal would.

Usage: pty_driver.py COLS ROWS -- COMMAND ARGS...

Everything the terminal shows is copied to stdout as it comes. Lines on
stdin drive it: `send HEX` types the bytes, `resize COLS ROWS` changes the
window size (the kernel sends SIGWINCH to the command). When the command
has exited and its output is drained, `EXIT <status>` goes to stderr.
"""

import fcntl
import os
import pty
import select
import struct
import sys
import termios


def set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    cols, rows = int(sys.argv[1]), int(sys.argv[2])
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    pid, fd = pty.fork()
    if pid == 0:
        set_size(0, cols, rows)
        os.execvp(cmd[0], cmd)
    pending = b""
    stdin_open = True
    while True:
        fds = [fd] + ([0] if stdin_open else [])
        ready, _, _ = select.select(fds, [], [], 0.5)
        if fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        if 0 in ready:
            chunk = os.read(0, 4096)
            if not chunk:
                stdin_open = False
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                words = line.decode().split()
                if words[:1] == ["send"]:
                    os.write(fd, bytes.fromhex(words[1]))
                elif words[:1] == ["resize"]:
                    set_size(fd, int(words[1]), int(words[2]))
    _, status = os.waitpid(pid, 0)
    sys.stderr.write("EXIT %d\n" % os.waitstatus_to_exitcode(status))


main()
