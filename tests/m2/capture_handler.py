#!/usr/bin/env python3
"""Capturing Mongrel2-protocol handler for differential tests.

Connects PULL to the server's send spec and PUB (as XPUB, wire-identical) to
its recv spec, records every message it receives as one JSON line, and
answers like a tiny application would. It only uses pyzmq and the stdlib and
runs unchanged against the real Mongrel2 and against zeroku.

Usage:
    capture_handler.py [--send SPEC] [--recv SPEC] [--sender-id ID] --out FILE

SPEC may hold several space-separated endpoints (all are connected). The
defaults come from M2_SEND_SPEC, M2_RECV_SPEC, M2_SENDER_ID; the output file
may also come from M2_CAPTURE_OUT.

Once the server's SUB socket has subscribed (so replies can no longer be
lost to the PUB/SUB slow-joiner race), it prints one line `READY` on stdout
(after at most --ready-timeout seconds, default 10, it prints `READY
(unconfirmed)` instead).

Each JSON line has:
  seq          1, 2, ... in order of receipt
  raw_b64      the whole message, base64
  sender, conn_id, path       the three space-separated fields (str)
  headers_encoding            "json" or "tnetstring"
  headers_raw  the JSON text (json encoding only; utf-8, invalid bytes
               replaced) - kept so invalid JSON from Mongrel2 is still visible
  headers      parsed headers (dict), or null if they did not parse
  headers_error               parse error text, if any
  body_len, body_b64          the body
  kind         request | upload-start | upload-done | websocket_handshake |
               websocket | disconnect | json | unparsed
  upload_file  for upload-done: {"path", "exists", "size", "sha256"}
  replies_b64  the reply bodies sent for this message (base64, without the
               "UUID LEN:IDS, " prefix; "" means a close)

Replies:
  request            HTTP/1.1 200 OK, Content-Length, body "ok <path>";
                     paths starting /noreply get no reply; /delay/<ms>/...
                     is answered after <ms> milliseconds (to provoke a
                     reply to a dead connection); /close/... is answered and
                     then closed with an empty reply; /empty/... gets only an
                     empty reply (close, no answer); /extra/... is answered,
                     then sent "EXTRA" past the response's end, then closed
  upload-start       nothing
  upload-done        200 with body "uploaded <size>" (size of the temp file)
  websocket_handshake  101 Switching Protocols with the accept key from BODY
  websocket          text/binary: echoed in a server frame of the same
                     opcode; ping: pong; close: close frame, then close
  disconnect / json  nothing
"""

import argparse
import base64
import hashlib
import json
import os
import signal
import sys
import time

import zmq


# ---------------------------------------------------------------- parsing


class ParseError(Exception):
    pass


def parse_netstring(data, pos=0):
    """Returns (payload, type_char, next_pos) for `LEN:payload<type>`."""
    colon = data.find(b":", pos)
    if colon < 0 or colon - pos > 10:
        raise ParseError("no length prefix at %d" % pos)
    try:
        n = int(data[pos:colon])
    except ValueError:
        raise ParseError("bad length %r" % data[pos:colon])
    start = colon + 1
    end = start + n
    if n < 0 or end + 1 > len(data):
        raise ParseError("truncated netstring")
    return data[start:end], data[end:end + 1], end + 1


def tnet_parse(data, pos=0):
    """Parses one tnetstring; returns (value, next_pos). Strings stay bytes."""
    payload, t, nxt = parse_netstring(data, pos)
    if t == b",":
        return payload, nxt
    if t == b"#":
        return int(payload), nxt
    if t == b"^":
        return float(payload), nxt
    if t == b"!":
        return payload == b"true", nxt
    if t == b"~":
        return None, nxt
    if t == b"]":
        out, p = [], 0
        while p < len(payload):
            v, p = tnet_parse(payload, p)
            out.append(v)
        return out, nxt
    if t == b"}":
        out, p = {}, 0
        while p < len(payload):
            k, p = tnet_parse(payload, p)
            v, p = tnet_parse(payload, p)
            out[k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)] = v
        return out, nxt
    raise ParseError("unknown tnetstring type %r" % t)


def jsonable(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def parse_message(msg):
    rec = {"raw_b64": base64.b64encode(msg).decode()}
    try:
        sender, conn_id, rest = msg.split(b" ", 2)
        path, rest = rest.split(b" ", 1)
    except ValueError:
        rec["kind"] = "unparsed"
        return rec, None
    rec["sender"] = sender.decode("utf-8", "replace")
    rec["conn_id"] = conn_id.decode("utf-8", "replace")
    rec["path"] = path.decode("utf-8", "replace")
    headers = None
    try:
        hv, pos = tnet_parse(rest, 0)
        if isinstance(hv, dict):
            rec["headers_encoding"] = "tnetstring"
            headers = jsonable(hv)
        else:
            rec["headers_encoding"] = "json"
            rec["headers_raw"] = hv.decode("utf-8", "replace")
            try:
                headers = json.loads(hv.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                rec["headers_error"] = "json: %s" % e
        body, pos = tnet_parse(rest, pos)
        if not isinstance(body, bytes):
            raise ParseError("body is not a string")
        if pos != len(rest):
            rec["trailing_b64"] = base64.b64encode(rest[pos:]).decode()
    except ParseError as e:
        rec["headers_error"] = rec.get("headers_error") or str(e)
        rec["headers"] = headers
        rec["kind"] = "unparsed"
        return rec, None
    rec["headers"] = headers
    rec["body_len"] = len(body)
    rec["body_b64"] = base64.b64encode(body).decode()
    return rec, body


def classify(rec, body):
    h = rec.get("headers") or {}
    method = h.get("METHOD")
    if method == "JSON":
        try:
            j = json.loads(body.decode("utf-8"))
        except Exception:
            j = None
        if isinstance(j, dict) and j.get("type") == "disconnect":
            return "disconnect"
        return "json"
    if method == "WEBSOCKET_HANDSHAKE":
        return "websocket_handshake"
    if method == "WEBSOCKET":
        return "websocket"
    if "x-mongrel2-upload-done" in h:
        return "upload-done"
    if "x-mongrel2-upload-start" in h:
        return "upload-start"
    return "request"


def first(v):
    return v[0] if isinstance(v, list) and v else v


def http_response(status, body, extra=""):
    return ("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            % (status, len(body), extra)).encode() + body


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--send", default=os.environ.get("M2_SEND_SPEC"))
    ap.add_argument("--recv", default=os.environ.get("M2_RECV_SPEC"))
    ap.add_argument("--sender-id", default=os.environ.get(
        "M2_SENDER_ID", "0f3e2a52-6bd1-4a3c-9a57-3c0d2b1c5e77"))
    ap.add_argument("--out", default=os.environ.get("M2_CAPTURE_OUT"))
    ap.add_argument("--ready-timeout", type=float, default=10.0)
    a = ap.parse_args()
    if not a.send or not a.recv or not a.out:
        ap.error("--send, --recv and --out (or M2_SEND_SPEC, M2_RECV_SPEC, "
                 "M2_CAPTURE_OUT) are required")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.IDENTITY, a.sender_id.encode())
    pull.setsockopt(zmq.LINGER, 0)
    # XPUB is PUB on the wire, but lets us see the server's subscription.
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 1000)
    for ep in a.recv.split():
        pub.connect(ep)
    for ep in a.send.split():
        pull.connect(ep)

    out = open(a.out, "a", buffering=1)
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    poller.register(pub, zmq.POLLIN)

    ready_deadline = time.monotonic() + a.ready_timeout
    ready = False
    pending = []  # (due, sender, conn_id, body)
    seq = 0

    def send(sender, conn_id, data):
        ids = conn_id.encode()
        pub.send(sender.encode() + b" " + str(len(ids)).encode() + b":" + ids + b", " + data)

    while not stop:
        now = time.monotonic()
        if not ready and now >= ready_deadline:
            ready = True
            print("READY (unconfirmed)", flush=True)
        timeout = 200
        if pending:
            timeout = max(0, min(timeout, int((min(p[0] for p in pending) - now) * 1000)))
        try:
            events = dict(poller.poll(timeout))
        except zmq.ZMQError:
            if stop:
                break
            raise
        if pub in events:
            sub = pub.recv()
            if not ready and sub[:1] == b"\x01":
                ready = True
                print("READY", flush=True)
        now = time.monotonic()
        due = [p for p in pending if p[0] <= now]
        pending = [p for p in pending if p[0] > now]
        for _, sender, cid, data in due:
            send(sender, cid, data)
        if pull not in events:
            continue
        msg = pull.recv()
        seq += 1
        rec, body = parse_message(msg)
        rec = dict({"seq": seq, "t": time.time()}, **rec)
        replies = []
        if body is not None:
            kind = classify(rec, body)
            rec["kind"] = kind
            h = rec.get("headers") or {}
            path = rec["path"]
            if kind == "request":
                resp = http_response("200 OK", ("ok " + path).encode())
                if path.startswith("/noreply"):
                    pass
                elif path.startswith("/delay/"):
                    try:
                        ms = int(path.split("/")[2])
                    except ValueError:
                        ms = 1000
                    pending.append((time.monotonic() + ms / 1000.0, rec["sender"],
                                    rec["conn_id"], resp))
                    rec["reply_delayed_ms"] = ms
                elif path.startswith("/close"):
                    replies = [resp, b""]
                elif path.startswith("/empty"):
                    replies = [b""]
                elif path.startswith("/extra"):
                    replies = [resp, b"EXTRA", b""]

                else:
                    replies = [resp]
            elif kind == "upload-done":
                fpath = first(h.get("x-mongrel2-upload-done"))
                info = {"path": fpath, "exists": False}
                try:
                    with open(fpath, "rb") as f:
                        data = f.read()
                    info.update(exists=True, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest())
                except (OSError, TypeError) as e:
                    info["error"] = str(e)
                rec["upload_file"] = info
                replies = [http_response("200 OK", ("uploaded %d" % info.get("size", -1)).encode())]
            elif kind == "websocket_handshake":
                accept = body.decode("latin-1").strip()
                replies = [("HTTP/1.1 101 Switching Protocols\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode()]
            elif kind == "websocket":
                try:
                    flags = int(str(first(h.get("FLAGS", "0x81"))), 16)
                except ValueError:
                    flags = 0x81
                op = flags & 0x0F
                if op in (0x1, 0x2):
                    replies = [ws_frame(op, body)]
                elif op == 0x9:
                    replies = [ws_frame(0xA, body)]
                elif op == 0x8:
                    replies = [ws_frame(0x8, body[:2]), b""]
            for r in replies:
                send(rec["sender"], rec["conn_id"], r)
        rec["replies_b64"] = [base64.b64encode(r).decode() for r in replies]
        out.write(json.dumps(rec, sort_keys=True) + "\n")

    out.close()
    pull.close()
    pub.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
