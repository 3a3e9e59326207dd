#!/usr/bin/env python3
"""shakedown driver for etcd's v3 JSON gateway (Python 3, stdlib only).

Through one etcd node (ETCD_URL, e.g. http://127.0.0.1:2379). By default one
register, key "r" (see docs/drivers.md for the protocol):

    read   POST /v3/kv/range        -> ok, value = the int, or null when absent
    write  POST /v3/kv/put          -> ok
    cas    POST /v3/kv/txn [a, b]   -> ok when the value was a and is now b,
                                       fail when the compare did not hold

With --kv, many keys, as the `kv` model reads them (values are
{"key": K, "value": V}, strings, "" when absent):

    get    range                    -> ok, value = {"key": K, "value": V}
    put    put                      -> ok
    append range, then a txn putting V + suffix if the key's mod_revision
           is unchanged; retried a few times, else fail (nothing changed)

With --serializable, reads are served by the local node without a quorum
(etcd's `serializable` range option): fast, and stale under partitions. That
is the deliberately weakened variant shakedown must catch.

A read that fails is recorded fail (a read changes nothing); a write or cas
whose reply never came is info, since it may have been applied.
"""

import base64
import json
import os
import socket
import sys
import urllib.error
import urllib.request

KEY = base64.b64encode(b"r").decode()
TIMEOUT_S = 1.0


def b64(value):
    return base64.b64encode(str(value).encode()).decode()


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
        return json.loads(resp.read() or b"{}")


def read(base, serializable):
    body = {"key": KEY}
    if serializable:
        body["serializable"] = True
    kvs = post(base, "/v3/kv/range", body).get("kvs") or []
    if not kvs:
        return None
    return int(base64.b64decode(kvs[0]["value"]).decode())


def write(base, value):
    post(base, "/v3/kv/put", {"key": KEY, "value": b64(value)})


def cas(base, old, new):
    txn = {
        "compare": [{"key": KEY, "target": "VALUE", "result": "EQUAL", "value": b64(old)}],
        "success": [{"requestPut": {"key": KEY, "value": b64(new)}}],
    }
    return bool(post(base, "/v3/kv/txn", txn).get("succeeded"))


def kv_range(base, key):
    """The key's value ("" when absent) and its mod_revision (0 when absent)."""
    kvs = post(base, "/v3/kv/range", {"key": b64(key)}).get("kvs") or []
    if not kvs:
        return "", 0
    return base64.b64decode(kvs[0].get("value", "")).decode(), int(kvs[0].get("mod_revision", 0))


APPEND_TRIES = 5


def kv_append(base, key, suffix):
    """True when the suffix was appended; False when every try lost a race."""
    for _ in range(APPEND_TRIES):
        value, rev = kv_range(base, key)
        txn = {
            "compare": [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(rev)}],
            "success": [{"requestPut": {"key": b64(key), "value": b64(value + suffix)}}],
        }
        if post(base, "/v3/kv/txn", txn).get("succeeded"):
            return True
    return False


def handle_kv(req, base):
    f, value = req.get("f"), req.get("value") or {}
    key, val = str(value.get("key", "")), str(value.get("value", ""))
    try:
        if f == "get":
            return {"type": "ok", "value": {"key": key, "value": kv_range(base, key)[0]}}
        if f == "put":
            post(base, "/v3/kv/put", {"key": b64(key), "value": b64(val)})
            return {"type": "ok"}
        if f == "append":
            if kv_append(base, key, val):
                return {"type": "ok"}
            return {"type": "fail", "error": "lost the race %d times" % APPEND_TRIES}
        return {"type": "fail", "error": "unknown f %r" % (f,)}
    except (urllib.error.URLError, socket.timeout, OSError, ValueError, KeyError) as err:
        if f == "get" or refused(err):
            return {"type": "fail", "error": str(err)}
        return {"type": "info", "error": str(err)}


def refused(err):
    reason = getattr(err, "reason", err)
    return isinstance(reason, ConnectionRefusedError)


def handle(req, base, serializable):
    f, value = req.get("f"), req.get("value")
    try:
        if f == "read":
            return {"type": "ok", "value": read(base, serializable)}
        if f == "write":
            write(base, value)
            return {"type": "ok"}
        if f == "cas":
            if not (isinstance(value, list) and len(value) == 2):
                return {"type": "fail", "error": "cas value must be [old, new]"}
            if cas(base, value[0], value[1]):
                return {"type": "ok"}
            return {"type": "fail", "error": "compare failed"}
        return {"type": "fail", "error": "unknown f %r" % (f,)}
    except (urllib.error.URLError, socket.timeout, OSError, ValueError, KeyError) as err:
        # Reads change nothing, and a refused connection never reached etcd.
        if f == "read" or refused(err):
            return {"type": "fail", "error": str(err)}
        return {"type": "info", "error": str(err)}


def main():
    serializable = "--serializable" in sys.argv[1:]
    kv = "--kv" in sys.argv[1:]
    base = os.environ.get("ETCD_URL", "").rstrip("/")
    if not base:
        print("etcd_driver: ETCD_URL is not set", file=sys.stderr)
        return 2
    for line in sys.stdin:
        try:
            req = json.loads(line)
            rid = req["id"]
        except (ValueError, KeyError, TypeError) as err:
            print(json.dumps({"id": None, "type": "info", "error": "bad request: %s" % err}), flush=True)
            continue
        reply = handle_kv(req, base) if kv else handle(req, base, serializable)
        reply["id"] = rid
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
