#!/usr/bin/env python3
"""shakedown driver for beanstalkd's text protocol (Python 3, stdlib only).

One tube (default) on BEANSTALK_ADDR (host:port), a fresh connection per
operation, so a job reserved by a cut-off operation goes back to ready when
its connection closes. Operations (see docs/drivers.md for the protocol):

    enqueue  put VALUE                     -> ok (INSERTED)
    dequeue  reserve-with-timeout 0, then delete it
                                           -> ok, value = the job's body;
                                              fail when the queue is empty
    drain    dequeue until nothing is ready, then prove the queue empty
                                           -> ok, value = the bodies, in order
             (a drain that cannot prove it, because jobs are still
             reserved, delayed or buried, answers info: an empty-looking
             queue is not proof that nothing is left, and total-queue
             would count what it missed as lost)

A refused connection never reached the server: fail. Anything else cut off
mid-operation (a kill -9) may or may not have taken effect: info. A dequeue
whose job arrived but whose delete did not go through still reports the job,
since it was delivered; beanstalkd will deliver it again (at-least-once).
"""

import json
import os
import socket
import sys

TIMEOUT_S = 0.5
TTR_S = 60
DRAIN_LIMIT = 100000


class Refused(Exception):
    """The operation certainly had no effect."""


class Conn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        except ConnectionRefusedError as err:
            raise Refused(str(err)) from err
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed by beanstalkd")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def body(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed mid-body")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data.decode()


def element(body):
    """The body as the workload's value: `{seq}` values are integers."""
    return int(body) if body.isdigit() else body


def put(conn, value):
    data = str(value).encode()
    conn.send(b"put 0 0 %d %d\r\n%s\r\n" % (TTR_S, len(data), data))
    reply = conn.line()
    if not reply.startswith("INSERTED "):
        raise RuntimeError("put: " + reply)


def take(conn):
    """Reserves and deletes one job; returns its body, or None when empty."""
    conn.send(b"reserve-with-timeout 0\r\n")
    reply = conn.line()
    if reply == "TIMED_OUT":
        return None
    parts = reply.split()
    if len(parts) != 3 or parts[0] != "RESERVED":
        raise RuntimeError("reserve: " + reply)
    body = conn.body(int(parts[2]))
    try:
        conn.send(b"delete %s\r\n" % parts[1].encode())
        deleted = conn.line()
    except OSError as err:
        print("delete of job %s cut off: %s" % (parts[1], err), file=sys.stderr, flush=True)
        return body
    if deleted != "DELETED":
        print("delete of job %s: %s" % (parts[1], deleted), file=sys.stderr, flush=True)
    return body


def not_ready(conn):
    """Jobs the tube holds that a reserve cannot see right now (reserved by
    another connection, delayed, buried), as text; empty when there are none."""
    conn.send(b"stats-tube default\r\n")
    reply = conn.line()
    parts = reply.split()
    if len(parts) != 2 or parts[0] != "OK":
        raise RuntimeError("stats-tube: " + reply)
    stats = dict(line.split(": ", 1) for line in conn.body(int(parts[1])).splitlines() if ": " in line)
    counts = {k: int(stats.get("current-jobs-" + k, "0")) for k in ("ready", "reserved", "delayed", "buried")}
    return ", ".join("%d %s" % (n, k) for k, n in counts.items() if n)


def handle(req, addr):
    f = req.get("f")
    conn = Conn(addr)
    try:
        if f == "enqueue":
            put(conn, req.get("value"))
            return {"type": "ok"}
        if f == "dequeue":
            body = take(conn)
            if body is None:
                return {"type": "fail", "error": "empty"}
            return {"type": "ok", "value": element(body)}
        if f == "drain":
            bodies = []
            while len(bodies) < DRAIN_LIMIT:
                body = take(conn)
                if body is None:
                    left = not_ready(conn)
                    if left:
                        return {"type": "info", "error": "cannot prove the queue empty: " + left}
                    return {"type": "ok", "value": [element(b) for b in bodies]}
                bodies.append(body)
            return {"type": "info", "error": "drain limit reached"}
        return {"type": "fail", "error": "unknown f %r" % (f,)}
    finally:
        conn.close()


def reply_to(req, addr):
    try:
        return handle(req, addr)
    except Refused as err:
        return {"type": "fail", "error": str(err)}
    except (OSError, RuntimeError, ValueError) as err:
        return {"type": "info", "error": str(err)}


def main():
    addr = os.environ.get("BEANSTALK_ADDR", "")
    if not addr:
        print("beanstalk_driver: BEANSTALK_ADDR is not set", file=sys.stderr)
        return 2
    for line in sys.stdin:
        try:
            req = json.loads(line)
            rid = req["id"]
        except (ValueError, KeyError, TypeError) as err:
            print("bad request %r: %s" % (line, err), file=sys.stderr, flush=True)
            continue
        reply = reply_to(req, addr)
        reply["id"] = rid
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
