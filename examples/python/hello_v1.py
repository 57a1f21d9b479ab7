#!/usr/bin/env python3
"""hello-py: a Toru plugin speaking protocol 1 ("legacy"), standard library only.

It behaves exactly like the plugins deployed for the first Toru host, so that
torud's legacy path stays honest: tests run it over a real Unix socket.

* `hello_v1.py --metadata` prints pretty JSON metadata (no "protocol" key,
  which means protocol 1) and exits 0.
* Without arguments it listens on $TORU_PLUGIN_SOCKET (falling back to
  /tmp/toru-plugins/hello-py.sock), accepts ONE connection at a time and reads
  length-prefixed (4-byte big-endian) JSON messages from it until EOF.
* `init` is remembered, `shutdown` exits 0 at once (leaving the socket file,
  as deployed plugins do), SIGTERM removes the socket and exits 0.
* HTTP answers use the plain shape: {"status", "headers", "body"}.

Routes: GET /, POST /echo, GET /bundle.js, GET /slow?ms=N; anything else 404.
"""

import json
import os
import signal
import socket
import struct
import sys
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

PLUGIN_ID = "hello-py"
METADATA = {
    "id": PLUGIN_ID,
    "name": "Hello (Python, protocol 1)",
    "version": "0.1.0",
    "author": None,
    "icon": "\U0001F40D",
    "route": "/hello-py",
}
# The front end, as bundles of the first host were written: registered as
# window["toru_plugin_<id>"], and calling its plugin with the page's own
# fetch (the browser's session cookie goes along) rather than the api object.
BUNDLE = """\
window["toru_plugin_hello-py"] = {
  mount(container) {
    const line = document.createElement("p");
    line.id = "hello-py-greeting";
    line.textContent = "Asking hello-py\u2026";
    container.replaceChildren(line);
    fetch("/api/plugins/route/hello-py/", { credentials: "same-origin" })
      .then((response) => response.json())
      .then((answer) => { line.textContent = answer.message; })
      .catch((e) => { line.textContent = "hello-py did not answer: " + e.message; });
  },
  unmount(container) {
    container.replaceChildren();
  },
};
"""
MAX_FRAME = 16 * 1024 * 1024
MAX_SLEEP_MS = 60000

instance_id = None


def now():
    return datetime.now(timezone.utc).isoformat()


def log(level, message):
    line = {"timestamp": now(), "level": level, "plugin": PLUGIN_ID, "message": message}
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


def json_response(status, value):
    return status, {"Content-Type": "application/json"}, json.dumps(value)


def handle_http(req):
    method = req.get("method", "")
    path, _, query = req.get("path", "/").partition("?")
    if method == "GET" and path == "/":
        greeting = {"message": "Hello from Python plugin!", "instance_id": instance_id}
        return json_response(200, greeting)
    if method == "POST" and path == "/echo":
        headers = {k.lower(): v for k, v in (req.get("headers") or {}).items()}
        content_type = headers.get("content-type", "text/plain")
        return 200, {"Content-Type": content_type}, req.get("body")
    if method == "GET" and path == "/bundle.js":
        return 200, {"Content-Type": "application/javascript"}, BUNDLE
    if method == "GET" and path == "/slow":
        try:
            ms = int(parse_qs(query).get("ms", ["0"])[0])
        except ValueError:
            return json_response(400, {"error": "ms must be an integer"})
        ms = max(0, min(ms, MAX_SLEEP_MS))
        time.sleep(ms / 1000)
        return json_response(200, {"slept_ms": ms})
    return json_response(404, {"error": "not found"})


def read_exact(conn, n):
    """n bytes from conn, or None at EOF (a partial message counts as EOF)."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def send(conn, message):
    data = json.dumps(message).encode("utf-8")
    conn.sendall(struct.pack(">I", len(data)) + data)


def handle_message(conn, message):
    global instance_id
    kind = message.get("type")
    payload = message.get("payload") or {}
    if kind == "lifecycle" and payload.get("action") == "init":
        instance_id = payload.get("instance_id")
        log("info", "initialized, instance " + str(instance_id))
    elif kind == "lifecycle" and payload.get("action") == "shutdown":
        log("info", "shutdown requested")
        sys.exit(0)
    elif kind == "http":
        req = payload.get("payload") or {}
        try:
            status, headers, body = handle_http(req)
        except Exception as e:  # a failing handler answers 500, never kills the plugin
            log("error", "handler failed: %r" % e)
            status, headers, body = json_response(500, {"error": "internal error"})
        send(conn, {
            "type": "http",
            "timestamp": now(),
            "request_id": message.get("request_id"),
            "payload": {"status": status, "headers": headers, "body": body},
        })
    else:
        log("error", "ignoring message of type %r" % kind)


def serve_connection(conn):
    while True:
        header = read_exact(conn, 4)
        if header is None:
            return
        (length,) = struct.unpack(">I", header)
        if length > MAX_FRAME:
            log("error", "message of %d bytes is too large, closing" % length)
            return
        data = read_exact(conn, length)
        if data is None:
            return
        try:
            message = json.loads(data.decode("utf-8"))
        except ValueError as e:
            log("error", "unreadable message: %s" % e)
            continue
        handle_message(conn, message)


def main():
    if "--metadata" in sys.argv[1:]:
        text = json.dumps(METADATA, indent=2, ensure_ascii=False) + "\n"
        sys.stdout.buffer.write(text.encode("utf-8"))
        return 0
    path = os.environ.get("TORU_PLUGIN_SOCKET") or "/tmp/toru-plugins/%s.sock" % PLUGIN_ID
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path) or os.path.islink(path):
        os.remove(path)

    def on_sigterm(_signum, _frame):
        log("info", "SIGTERM, exiting")
        try:
            os.remove(path)
        except OSError:
            pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    log("info", "listening on " + path)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                serve_connection(conn)
            except OSError as e:
                log("error", "connection failed: %s" % e)


if __name__ == "__main__":
    sys.exit(main())
