#!/usr/bin/env python3
"""Misbehaving Toru plugins for the VM test (packaging/vm/run.sh): protocol 1, stdlib only.

The file is installed under three names; the name says what the plugin does once it
serves (`GET /` answers its id, pid and what it did):

* hog   allocates memory, 8 MiB at a time, up to 200 MiB (its memory_max stops it);
* bomb  forks children that sleep, as many as it can (its pids_max stops it), and
        goes on serving;
* spin  keeps one CPU busy in a thread (its cpu_max holds it) and goes on serving.
"""

import json
import os
import socket
import struct
import sys
import threading
import time

NAME = os.path.basename(sys.argv[0]).split(".")[0]
done = {"forks": 0, "refused": None, "allocated_mib": 0}


def log(level, message, **fields):
    fields.update({"level": level, "message": message})
    print(json.dumps(fields), file=sys.stderr, flush=True)


def hog():
    kept = []
    for _ in range(25):
        kept.append(b"\x01" * (8 << 20))  # written, so resident
        done["allocated_mib"] += 8
        log("info", "allocated", mib=done["allocated_mib"])
        time.sleep(0.05)
    log("warn", "allocated everything and was not stopped", mib=done["allocated_mib"])
    while True:
        time.sleep(60)


def bomb():
    while True:
        try:
            pid = os.fork()
        except OSError as e:
            if done["refused"] is None:
                done["refused"] = str(e)
                log("warn", "fork refused", forks=done["forks"], error=str(e))
            time.sleep(0.2)
            continue
        if pid == 0:
            while True:
                time.sleep(60)
        done["forks"] += 1


def spin():
    while True:
        pass


def frame(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(path):
    if os.path.exists(path):
        os.remove(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    log("info", "listening", socket=path)
    while True:
        conn, _ = server.accept()
        with conn:
            while True:
                header = frame(conn, 4)
                if header is None:
                    break
                data = frame(conn, struct.unpack(">I", header)[0])
                if data is None:
                    break
                message = json.loads(data)
                if message.get("type") != "http":
                    continue
                body = json.dumps(dict(done, id=NAME, pid=os.getpid()))
                answer = {"type": "http", "request_id": message.get("request_id"),
                          "payload": {"status": 200,
                                      "headers": {"Content-Type": "application/json"},
                                      "body": body}}
                out = json.dumps(answer).encode()
                try:
                    conn.sendall(struct.pack(">I", len(out)) + out)
                except OSError:
                    break


def main():
    if "--metadata" in sys.argv[1:]:
        print(json.dumps({"id": NAME, "name": NAME, "version": "1.0", "author": None,
                          "icon": "!", "route": "/" + NAME, "protocol": 1}))
        return 0
    path = os.environ["TORU_PLUGIN_SOCKET"]
    worker = {"hog": hog, "bomb": bomb, "spin": spin}.get(NAME)
    if worker is not None:
        # Once it serves: torud sees it running, then the misbehaviour begins.
        threading.Timer(1.0, worker).start()
    serve(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
