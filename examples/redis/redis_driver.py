#!/usr/bin/env python3
"""shakedown driver for Redis (Python 3, stdlib only; RESP over a socket).

One register, key "r", on the server at 127.0.0.1:REDIS_PORT, over one
connection per actor, opened again after any error. Operations (see
docs/drivers.md for the protocol):

    read   GET r                 -> ok, value = the int, or null when absent
    write  SET r VALUE           -> ok
    cas    EVAL (a Lua compare-and-set) [old, new]
                                 -> ok when r was old and is now new,
                                    fail when it was not

A refused connection never reached the server, and a read changes nothing:
both fail (a read on a connection the server dropped is first retried once
on a new one). A write or cas cut off mid-reply (a kill -9) may have been
applied: info.
"""

import json
import os
import socket
import sys

TIMEOUT_S = 1.0
CAS = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end"


class Refused(Exception):
    """The operation certainly had no effect."""


class Conn:
    def __init__(self, port):
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        except ConnectionRefusedError as err:
            raise Refused(str(err))
        self.buf = b""

    def command(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self.reply()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        raise ValueError("unexpected reply %r" % line)


def handle(conn, f, value):
    if f == "read":
        got = conn.command("GET", "r")
        return {"type": "ok", "value": None if got is None else int(got)}
    if f == "write":
        conn.command("SET", "r", value)
        return {"type": "ok"}
    if f == "cas":
        if conn.command("EVAL", CAS, 1, "r", value[0], value[1]) == 1:
            return {"type": "ok"}
        return {"type": "fail", "error": "compare failed"}
    return {"type": "fail", "error": "unknown f %r" % (f,)}


def main():
    port = int(os.environ.get("REDIS_PORT", "0"))
    if not port:
        print("redis_driver: REDIS_PORT is not set", file=sys.stderr)
        return 2
    conn = None
    for line in sys.stdin:
        try:
            req = json.loads(line)
            rid, f, value = req["id"], req.get("f"), req.get("value")
        except (ValueError, KeyError, TypeError) as err:
            print(json.dumps({"id": None, "type": "info", "error": "bad request: %s" % err}), flush=True)
            continue
        try:
            try:
                conn = conn or Conn(port)
                reply = handle(conn, f, value)
            except (OSError, ConnectionError):
                # A read on a connection the server dropped (it was killed)
                # is retried once on a fresh one: reads change nothing.
                if f != "read" or conn is None:
                    raise
                conn = Conn(port)
                reply = handle(conn, f, value)
        except Refused as err:
            conn, reply = None, {"type": "fail", "error": "refused: %s" % err}
        except RuntimeError as err:
            # An error reply (LOADING, READONLY...): the command was not run.
            reply = {"type": "fail", "error": str(err)}
        except (OSError, ValueError) as err:
            conn = None
            reply = {"type": "fail" if f == "read" else "info", "error": str(err)}
        reply["id"] = rid
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
