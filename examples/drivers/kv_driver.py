#!/usr/bin/env python3
"""Example shakedown driver for the testbed `kv` service (Python 3, stdlib only).

A driver is a long-running process that turns shakedown's abstract operations
into calls on the system under test. shakedown starts it, writes one JSON
request per line on its stdin and reads exactly one JSON reply line per
request from its stdout. Write a driver in any language by following this
protocol:

Request (one JSON object per line; ignore fields you do not know):

    {"id": 1, "f": "add", "value": 5, "target": null, "actor": "alice"}

    id      opaque; echo it back unchanged
    f       the operation name
    value   the operation's argument (any JSON)
    target  a string naming what to act on, or null for the default
    actor   which logical client issued it (informational)

Reply (one JSON object per line, flushed at once):

    {"id": 1, "type": "ok", "value": <json>}     it happened; value is the result
    {"id": 1, "type": "fail", "error": "..."}    it definitely did not happen
    {"id": 1, "type": "info", "error": "..."}    unknown: it may or may not have happened

Pick "fail" only when the operation certainly had no effect (e.g. the
connection was refused, or the service rejected it); a timeout or a dropped
connection is "info". A line that is not a JSON object gets
{"id": null, "type": "info", "error": "bad request: ..."}. Never crash on
bad input; exit 0 when stdin reaches EOF. Diagnostics go to stderr, never
stdout.

This driver reads the service's base URL from the KV_URL environment variable
(e.g. http://127.0.0.1:8080) and supports:

    add    POST /set/{target or "s"}/{value}   -> ok, value = the element
    read   GET  /set/{target or "s"}           -> ok, value = the JSON array
    write  PUT  /kv/{target or "r"}, body str(value) -> ok, value = value
    get    GET  /kv/{target or "r"}            -> ok, value = int if it parses
                                                  (else the text); 404 -> ok null
    cas    POST /kv/{target or "r"}/cas {"from": str(a), "to": str(b)} with
           value = [a, b]                      -> ok; 409 or 404 -> fail

Every HTTP call has a 2 second timeout.
"""

import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 2.0
DEFAULT_KEY = "r"
DEFAULT_SET = "s"

# Talk to the service directly: an http_proxy in the environment must not
# stand between the driver and the process under test.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Definite(Exception):
    """The operation certainly had no effect: reply "fail"."""


class Unknown(Exception):
    """The operation may or may not have taken effect: reply "info"."""


def http(method, path, body=None):
    """Performs one request; returns (status, text). Raises Definite or Unknown."""
    url = os.environ.get("KV_URL", "http://127.0.0.1:8080").rstrip("/") + path
    data = None if body is None else body.encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with OPENER.open(request, timeout=TIMEOUT_S) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            raise Definite("connection refused") from e
        raise Unknown(f"request failed: {e.reason}") from e
    except ConnectionRefusedError as e:
        raise Definite("connection refused") from e
    except (socket.timeout, TimeoutError) as e:
        raise Unknown("timed out") from e
    except (OSError, ValueError) as e:
        raise Unknown(f"request failed: {e}") from e


def segment(text):
    """Quotes text for use as one URL path segment."""
    return urllib.parse.quote(str(text), safe="")


def unexpected(status, text):
    """A status the operation does not expect: the outcome is unknown."""
    return Unknown(f"unexpected HTTP {status}: {text.strip()[:200]}")


def op_add(value, target):
    status, text = http("POST", f"/set/{segment(target or DEFAULT_SET)}/{segment(value)}")
    if status == 200:
        return value
    raise unexpected(status, text)


def op_read(value, target):
    status, text = http("GET", f"/set/{segment(target or DEFAULT_SET)}")
    if status == 200:
        try:
            return json.loads(text)
        except ValueError as e:
            raise Unknown(f"bad set JSON: {e}") from e
    raise unexpected(status, text)


def op_write(value, target):
    status, text = http("PUT", f"/kv/{segment(target or DEFAULT_KEY)}", str(value))
    if status == 200:
        return value
    raise unexpected(status, text)


def op_get(value, target):
    status, text = http("GET", f"/kv/{segment(target or DEFAULT_KEY)}")
    if status == 404:
        return None
    if status != 200:
        raise unexpected(status, text)
    try:
        return int(text)
    except ValueError:
        return text


def op_cas(value, target):
    if not isinstance(value, list) or len(value) != 2:
        raise Definite(f"cas needs value [from, to], got {json.dumps(value)}")
    body = json.dumps({"from": str(value[0]), "to": str(value[1])})
    status, text = http("POST", f"/kv/{segment(target or DEFAULT_KEY)}/cas", body)
    if status == 200:
        return value
    if status == 409:
        raise Definite("mismatch")
    if status == 404:
        raise Definite("not found")
    raise unexpected(status, text)


OPS = {"add": op_add, "read": op_read, "write": op_write, "get": op_get, "cas": op_cas}


def handle(line):
    """Turns one request line into one reply object."""
    try:
        request = json.loads(line)
    except ValueError as e:
        return {"id": None, "type": "info", "error": f"bad request: {e}"}
    if not isinstance(request, dict):
        return {"id": None, "type": "info", "error": "bad request: not a JSON object"}
    op_id = request.get("id")
    f = request.get("f")
    op = OPS.get(f) if isinstance(f, str) else None
    if op is None:
        return {"id": op_id, "type": "fail", "error": f"unknown f: {json.dumps(f)}"}
    target = request.get("target")
    target = target if isinstance(target, str) and target else None
    try:
        return {"id": op_id, "type": "ok", "value": op(request.get("value"), target)}
    except Definite as e:
        return {"id": op_id, "type": "fail", "error": str(e)}
    except Unknown as e:
        return {"id": op_id, "type": "info", "error": str(e)}
    except Exception as e:  # A driver bug must not kill the run: report it.
        return {"id": op_id, "type": "info", "error": f"driver error: {e!r}"}


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        try:
            sys.stdout.write(json.dumps(handle(line)) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
