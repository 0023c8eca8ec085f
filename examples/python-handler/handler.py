#!/usr/bin/env python3
"""Hello-world handler speaking the Mongrel2 protocol (works behind zeroku
and behind the real Mongrel2 1.12).

Environment:
  M2_SEND_SPEC   where requests come from (the server binds PUSH; we PULL);
                 several space-separated endpoints: we connect to all
  M2_RECV_SPEC   where replies go (the server binds SUB; we PUB); same
  M2_SENDER_ID   our socket identity (default: a fixed UUID)
  ZEROKU_INSTANCE  shown in the reply
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

DEFAULT_SENDER_ID = "82209006-86ff-4982-b5ea-d1e29e55d481"


def tnetstring(data, pos=0):
    """Parses one netstring/tnetstring at pos: returns (value, next_pos)."""
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
    """Splits `SENDER CONN_ID PATH LEN:HEADERS,LEN:BODY,`."""
    sender, conn_id, path, rest = msg.split(b" ", 3)
    headers, pos = tnetstring(rest)
    if isinstance(headers, bytes):  # JSON headers (the default protocol)
        headers = json.loads(headers)
    body, _ = tnetstring(rest, pos)
    return sender, conn_id, path.decode("utf-8", "replace"), headers, body


def main():
    send_specs = os.environ.get("M2_SEND_SPEC", "tcp://127.0.0.1:9997").split()
    recv_specs = os.environ.get("M2_RECV_SPEC", "tcp://127.0.0.1:9996").split()
    sender_id = os.environ.get("M2_SENDER_ID") or DEFAULT_SENDER_ID
    instance = os.environ.get("ZEROKU_INSTANCE", "python-handler")

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))

    ctx = zmq.Context()
    reqs = ctx.socket(zmq.PULL)
    reqs.setsockopt(zmq.IDENTITY, sender_id.encode())
    reqs.setsockopt(zmq.LINGER, 0)
    resp = ctx.socket(zmq.PUB)
    resp.setsockopt(zmq.IDENTITY, sender_id.encode())
    resp.setsockopt(zmq.LINGER, 2000)
    for ep in send_specs:
        reqs.connect(ep)
    for ep in recv_specs:
        resp.connect(ep)
    print("handler %s: pulling from %s, replying to %s"
          % (instance, " ".join(send_specs), " ".join(recv_specs)), flush=True)

    poller = zmq.Poller()
    poller.register(reqs, zmq.POLLIN)
    while not stopping:
        try:
            if not poller.poll(250):
                continue
            msg = reqs.recv()
        except zmq.ZMQError:
            continue  # interrupted by a signal
        try:
            sender, conn_id, path, headers, _body = parse(msg)
        except (ValueError, IndexError) as e:
            print("bad message ignored: %s" % e, file=sys.stderr, flush=True)
            continue
        method = headers.get("METHOD")
        if method in ("JSON", "WEBSOCKET", "WEBSOCKET_HANDSHAKE"):
            continue  # disconnect notices etc.; no WebSocket here
        if "x-mongrel2-upload-start" in headers and "x-mongrel2-upload-done" not in headers:
            continue  # answer once the upload is done
        text = ("Hello from %s at %s\n" % (instance, path)).encode()
        reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
            len(text), text)
        prefix = sender + b" %d:%s, " % (len(conn_id), conn_id)
        resp.send(prefix + reply)
        conn = str(headers.get("connection", "")).lower()
        if conn == "close" or (headers.get("VERSION") == "HTTP/1.0" and conn != "keep-alive"):
            resp.send(prefix)  # an empty body closes the connection

    print("handler %s: SIGTERM, exiting" % instance, flush=True)
    reqs.close()
    resp.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
