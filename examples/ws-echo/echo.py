#!/usr/bin/env python3
"""WebSocket echo handler over the Mongrel2 protocol (zeroku or the real
Mongrel2 1.12). The server does the WebSocket framing on the way in: the
upgrade arrives as METHOD=WEBSOCKET_HANDSHAKE with the computed
Sec-WebSocket-Accept value as body, and each frame as METHOD=WEBSOCKET with
header FLAGS (the frame's first byte, e.g. "0x81") and the unmasked payload
as body. Replies are raw bytes for the client: the 101 response, then
server frames; an empty reply closes the connection.

Environment: M2_SEND_SPEC, M2_RECV_SPEC (space-separated lists),
M2_SENDER_ID, ZEROKU_INSTANCE.
"""

import json
import os
import signal
import sys

try:
    import zmq
except ImportError:  # e.g. a pyenv python3 first on PATH: use Debian's
    if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3":
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

DEFAULT_SENDER_ID = "5a1b6d0e-3c0f-4f4e-9a43-0b7e2b1d9c11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def tnetstring(data, pos=0):
    colon = data.index(b":", pos)
    n = int(data[pos:colon])
    start, end = colon + 1, colon + 1 + n
    payload, kind = data[start:end], data[end:end + 1]
    if kind == b"}":
        out, p = {}, 0
        while p < len(payload):
            k, p = tnetstring(payload, p)
            v, p = tnetstring(payload, p)
            out[k.decode()] = v.decode() if isinstance(v, bytes) else v
        return out, end + 1
    if kind == b"]":
        out, p = [], 0
        while p < len(payload):
            v, p = tnetstring(payload, p)
            out.append(v.decode() if isinstance(v, bytes) else v)
        return out, end + 1
    return payload, end + 1


def parse(msg):
    sender, conn_id, path, rest = msg.split(b" ", 3)
    headers, pos = tnetstring(rest)
    if isinstance(headers, bytes):
        headers = json.loads(headers)
    body, _ = tnetstring(rest, pos)
    return sender, conn_id, path.decode("utf-8", "replace"), headers, body


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


def main():
    send_specs = os.environ.get("M2_SEND_SPEC", "tcp://127.0.0.1:9997").split()
    recv_specs = os.environ.get("M2_RECV_SPEC", "tcp://127.0.0.1:9996").split()
    sender_id = os.environ.get("M2_SENDER_ID") or DEFAULT_SENDER_ID
    instance = os.environ.get("ZEROKU_INSTANCE", "ws-echo")

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))

    ctx = zmq.Context()
    reqs = ctx.socket(zmq.PULL)
    reqs.setsockopt(zmq.IDENTITY, sender_id.encode())
    reqs.setsockopt(zmq.LINGER, 0)
    resp = ctx.socket(zmq.PUB)
    resp.setsockopt(zmq.LINGER, 2000)
    for ep in send_specs:
        reqs.connect(ep)
    for ep in recv_specs:
        resp.connect(ep)
    print("ws-echo %s ready" % instance, flush=True)

    poller = zmq.Poller()
    poller.register(reqs, zmq.POLLIN)
    while not stopping:
        try:
            if not poller.poll(250):
                continue
            msg = reqs.recv()
        except zmq.ZMQError:
            continue
        try:
            sender, conn_id, path, headers, body = parse(msg)
        except (ValueError, IndexError) as e:
            print("bad message ignored: %s" % e, file=sys.stderr, flush=True)
            continue
        prefix = sender + b" %d:%s, " % (len(conn_id), conn_id)
        method = headers.get("METHOD")
        if method == "JSON":
            continue  # {"type":"disconnect"}: nothing to clean up here
        if method == "WEBSOCKET_HANDSHAKE":
            resp.send(prefix + b"HTTP/1.1 101 Switching Protocols\r\n"
                      b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + body.strip() + b"\r\n\r\n")
        elif method == "WEBSOCKET":
            try:
                op = int(str(headers.get("FLAGS", "0x81")), 16) & 0x0F
            except ValueError:
                op = OP_TEXT
            if op in (OP_TEXT, OP_BINARY):
                resp.send(prefix + frame(op, body))
            elif op == OP_PING:
                resp.send(prefix + frame(OP_PONG, body))
            elif op == OP_CLOSE:
                resp.send(prefix + frame(OP_CLOSE, body[:2]))
                resp.send(prefix)  # empty reply: close the connection
        elif "x-mongrel2-upload-start" in headers and "x-mongrel2-upload-done" not in headers:
            continue
        else:
            text = ("WebSocket echo (%s): connect to ws://<host>%s\n" % (instance, path)).encode()
            resp.send(prefix + b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(text), text))

    print("ws-echo %s: SIGTERM, exiting" % instance, flush=True)
    reqs.close()
    resp.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
