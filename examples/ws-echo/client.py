#!/usr/bin/env python3
"""Tiny stdlib WebSocket client: `client.py ws://host:port/path MESSAGE...`
sends each MESSAGE as a text frame, prints each echo, then closes.

Python's resolver does not know `*.localhost` names (curl and browsers do), so for
`ws://echo.localhost:8080/...` it connects to 127.0.0.1 and sends `Host: echo.localhost:8080`,
which is all the frontend routes on. ZEROKU_CONNECT=HOST:PORT connects there instead, with the
URL's host in the Host header (e.g. a frontend on another address)."""

import base64
import hashlib
import os
import socket
import sys
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def send_frame(s, opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("connection closed")
        buf += d
    return buf


def recv_frame(s):
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(recv_exact(s, 2), "big")
    elif n == 127:
        n = int.from_bytes(recv_exact(s, 8), "big")
    return b0, recv_exact(s, n)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    u = urlsplit(sys.argv[1])
    port = u.port or 80
    addr = (u.hostname, port)
    if os.environ.get("ZEROKU_CONNECT"):
        h, _, p = os.environ["ZEROKU_CONNECT"].rpartition(":")
        addr = (h, int(p))
    elif u.hostname.endswith(".localhost"):
        addr = ("127.0.0.1", port)
    s = socket.create_connection(addr, timeout=10)
    key = base64.b64encode(os.urandom(16))
    host = u.hostname if port == 80 else "%s:%d" % (u.hostname, port)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n"
              % ((u.path or "/").encode(), host.encode(), key))
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(s, 1)
    expect = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if not head.startswith(b"HTTP/1.1 101") or expect not in head:
        sys.exit("handshake failed: %r" % head)
    for msg in sys.argv[2:]:
        send_frame(s, 0x1, msg.encode())
        flags, payload = recv_frame(s)
        print(payload.decode("utf-8", "replace"))
    send_frame(s, 0x8, b"\x03\xe8")
    flags, payload = recv_frame(s)
    if flags != 0x88:
        sys.exit("expected a close frame, got 0x%02x" % flags)
    s.close()


if __name__ == "__main__":
    main()
