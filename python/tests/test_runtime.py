"""The Python SDK against docs/PROTOCOL.md, with this test as the host: a plugin of
this process served on a real Unix socket, driven frame by frame."""

import asyncio
import json
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ["TORU_LOG_LEVEL"] = "error"  # the plugins' own lines would drown the report

from toru_plugin import HttpError, Plugin, Request, Response  # noqa: E402
from toru_plugin import runtime, wire  # noqa: E402

INIT = {"type": "init", "id": 1, "protocol": 2, "instance_id": "550e8400-e29b-41d4-a716-446655440000",
        "plugin_id": "t", "config": {"greeting": "hi"}}


def make_plugin() -> Plugin:
    plugin = Plugin(id="t", name="Test", version="1", route="/t")
    seen: dict[str, object] = {}

    @plugin.on_init
    async def init(ctx):
        seen["config"] = ctx.config
        # KV already works before init_ok (5.1).
        await ctx.kv.set("inited", b"yes")

    @plugin.on("POST", "/echo")
    async def echo(req: Request) -> Response:
        return Response(201, req.headers + [("x-len", str(len(req.body)))], req.body)

    @plugin.on("GET", "/slow")
    async def slow(req: Request) -> Response:
        await asyncio.sleep(int(req.query("ms", "100")) / 1000)
        return Response.text(req.query("n", "") or "")

    @plugin.on("GET", "/kv")
    async def kv(req: Request) -> Response:
        kv = plugin.ctx.kv
        await kv.set("a/1", "one")
        await kv.set("a/2", b"\x00\xff")
        value = await kv.get("a/2")
        missing = await kv.get("nope")
        existed = await kv.delete("a/1")
        keys = await kv.list("a/")
        try:
            await kv.set("", b"x")
            refused = None
        except runtime.KvError as e:
            refused = e.code
        return Response.json({"value": list(value or b""), "missing": missing, "existed": existed,
                              "keys": keys, "refused": refused, "config": seen.get("config")})

    @plugin.on("GET", "/boom")
    async def boom(req: Request) -> Response:
        raise RuntimeError("boom")

    @plugin.on("GET", "/teapot")
    async def teapot(req: Request) -> Response:
        raise HttpError(418, "short and stout")

    return plugin


class Host:
    """The host's end: frames in and out, and a KV store answering the plugin."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.store: dict[str, bytes] = {}
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.pump = asyncio.ensure_future(self._pump())

    def send(self, header: dict, body: bytes = b"") -> None:
        self.writer.write(wire.encode(header, body))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def _pump(self) -> None:
        try:
            while True:
                payload = await wire.read_payload(self.reader)
                if payload is None:
                    await self.inbox.put(None)
                    return
                frame = wire.decode(payload)
                if frame.type.startswith("kv_"):
                    self._kv(frame)
                else:
                    await self.inbox.put(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.inbox.put(None)

    def _kv(self, frame: wire.Frame) -> None:
        h, i = frame.header, frame.header["id"]
        key = h.get("key", "")
        if frame.type != "kv_list" and not key:
            self.send({"type": "error", "id": i, "code": "invalid_key", "message": "key is empty"})
        elif frame.type == "kv_set":
            self.store[key] = frame.body
            self.send({"type": "kv_ok", "id": i})
        elif frame.type == "kv_get":
            found = key in self.store
            self.send({"type": "kv_value", "id": i, "found": found}, self.store.get(key, b""))
        elif frame.type == "kv_delete":
            self.send({"type": "kv_deleted", "id": i, "existed": self.store.pop(key, None) is not None})
        elif frame.type == "kv_list":
            keys = sorted(k for k in self.store if k.startswith(h.get("prefix", "")))
            self.send({"type": "kv_keys", "id": i, "keys": keys, "next": None})

    async def next(self, timeout: float = 5) -> wire.Frame | None:
        return await asyncio.wait_for(self.inbox.get(), timeout)


class RuntimeTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "run", "t.sock")
        self.hosts: list[Host] = []
        self.runtime = runtime._Runtime(make_plugin())
        self.serving = asyncio.ensure_future(self.runtime.run(self.path))
        for _ in range(100):
            if os.path.exists(self.path):
                break
            await asyncio.sleep(0.01)
        self.host = await self.connect()

    async def asyncTearDown(self) -> None:
        self.runtime.begin_shutdown(0)
        await asyncio.wait_for(self.serving, 5)
        for host in self.hosts:
            host.pump.cancel()
            host.writer.close()
        self.dir.cleanup()

    async def connect(self, init: bool = True) -> Host:
        reader, writer = await asyncio.open_unix_connection(self.path)
        host = Host(reader, writer)
        self.hosts.append(host)
        if init:
            host.send(INIT)
            answer = await host.next()
            self.assertEqual(answer.header, {"type": "init_ok", "id": 1, "protocol": 2})
        return host

    async def test_the_socket_is_the_owner_s_alone(self) -> None:
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(self.path)).st_mode & 0o777, 0o700)
        self.assertEqual(self.host.store["inited"], b"yes")

    async def test_a_request_keeps_status_headers_and_binary_body(self) -> None:
        body = bytes(range(256)) * 10
        self.host.send({"type": "http_request", "id": 2, "method": "POST", "path": "/echo?x=1",
                        "headers": [["set-cookie", "a=1"], ["set-cookie", "b=2"]]}, body)
        answer = await self.host.next()
        self.assertEqual(answer.header["type"], "http_response")
        self.assertEqual(answer.header["id"], 2)
        self.assertEqual(answer.header["status"], 201)
        self.assertEqual(answer.header["headers"],
                         [["set-cookie", "a=1"], ["set-cookie", "b=2"], ["x-len", "2560"]])
        self.assertEqual(answer.body, body)

    async def test_64_requests_in_flight_each_with_its_own_id_and_ping_while_busy(self) -> None:
        for i in range(64):
            self.host.send({"type": "http_request", "id": 100 + i, "method": "GET",
                            "path": f"/slow?ms={300 - i * 4}&n={i}", "headers": []})
        self.host.send({"type": "ping", "id": 99})
        first = await self.host.next()
        self.assertEqual(first.header, {"type": "pong", "id": 99}, "ping is answered before the busy handlers")
        got = {}
        for _ in range(64):
            frame = await self.host.next()
            got[frame.header["id"]] = frame.body.decode()
        self.assertEqual(got, {100 + i: str(i) for i in range(64)})

    async def test_kv_calls_errors_and_config(self) -> None:
        self.host.send({"type": "http_request", "id": 2, "method": "GET", "path": "/kv", "headers": []})
        answer = await self.host.next()
        self.assertEqual(json.loads(answer.body), {"value": [0, 255], "missing": None, "existed": True,
                                                   "keys": ["a/2"], "refused": "invalid_key",
                                                   "config": {"greeting": "hi"}})

    async def test_a_failing_handler_answers_500_and_the_plugin_goes_on(self) -> None:
        self.host.send({"type": "http_request", "id": 2, "method": "GET", "path": "/boom", "headers": []})
        self.host.send({"type": "http_request", "id": 3, "method": "GET", "path": "/teapot", "headers": []})
        self.host.send({"type": "http_request", "id": 4, "method": "GET", "path": "/nope", "headers": []})
        self.host.send({"type": "http_request", "id": 5, "method": "PUT", "path": "/echo", "headers": []})
        answers = {}
        for _ in range(4):
            frame = await self.host.next()
            answers[frame.header["id"]] = (frame.header["status"], json.loads(frame.body)["error"])
        self.assertEqual(answers[2], (500, "RuntimeError: boom"))
        self.assertEqual(answers[3], (418, "short and stout"))
        self.assertEqual(answers[4][0], 404)
        self.assertEqual(answers[5][0], 405)

    async def test_cancel_is_tolerated_and_not_answered(self) -> None:
        self.host.send({"type": "http_request", "id": 2, "method": "GET", "path": "/slow?ms=2000", "headers": []})
        await asyncio.sleep(0.05)
        self.host.send({"type": "cancel", "id": 2})
        self.host.send({"type": "cancel", "id": 777})
        self.host.send({"type": "ping", "id": 3})
        self.assertEqual((await self.host.next()).header, {"type": "pong", "id": 3})
        with self.assertRaises(asyncio.TimeoutError):
            await self.host.next(timeout=0.5)

    async def test_bad_input_is_answered_as_the_spec_says(self) -> None:
        cases = [
            (struct.pack(">I", 2) + b"\x00\x00", None, "bad_message"),                 # N < 4
            (struct.pack(">II", 8, 100) + b"abcd", None, "bad_message"),               # H > N - 4
            (struct.pack(">I", 2) + b"{}", None, "bad_message"),                       # protocol 1
            (struct.pack(">II", 7, 3) + b"[1]", None, "bad_message"),                   # not an object
        ]
        for raw, msg_id, code in cases:
            self.host.send_raw(raw)
            answer = await self.host.next()
            self.assertEqual((answer.header["type"], answer.header["id"], answer.header["code"]),
                             ("error", msg_id, code), raw)
        self.host.send({"type": "frobnicate", "id": 5})
        self.host.send({"type": "kv_get", "id": 6, "key": "x"})
        self.host.send({"type": "init", "id": 7, "protocol": 2})
        self.host.send({"type": "http_request", "id": 8, "method": "GET", "path": "/", "headers": [["bad name", "v"]]})
        expected = [(5, "unknown_type"), (6, "unexpected_message"), (7, "unexpected_message"), (8, "bad_message")]
        for msg_id, code in expected:
            answer = await self.host.next()
            self.assertEqual((answer.header["id"], answer.header["code"]), (msg_id, code))
        # Still serving.
        self.host.send({"type": "ping", "id": 9})
        self.assertEqual((await self.host.next()).header, {"type": "pong", "id": 9})

    async def test_duplicate_ids_are_refused_and_the_first_goes_on(self) -> None:
        self.host.send({"type": "http_request", "id": 2, "method": "GET", "path": "/slow?ms=200&n=first", "headers": []})
        self.host.send({"type": "http_request", "id": 2, "method": "GET", "path": "/slow?ms=1&n=second", "headers": []})
        refused = await self.host.next()
        self.assertEqual((refused.header["type"], refused.header["code"]), ("error", "duplicate_id"))
        answer = await self.host.next()
        self.assertEqual(answer.body, b"first")

    async def test_an_oversized_prefix_closes_without_reading(self) -> None:
        self.host.send_raw(struct.pack(">I", 4 * 1024 * 1024 * 1024 - 1))
        self.assertIsNone(await self.host.next())
        other = await self.connect()  # the plugin goes on: a new connection works
        other.send({"type": "ping", "id": 2})
        self.assertEqual((await other.next()).header, {"type": "pong", "id": 2})

    async def test_the_first_message_must_be_init(self) -> None:
        host = await self.connect(init=False)
        host.send({"type": "ping", "id": 1})
        answer = await host.next()
        self.assertEqual(answer.header["code"], "unexpected_message")
        self.assertIsNone(await host.next(), "the connection is closed")
        old = await self.connect(init=False)
        old.send({**INIT, "protocol": 1})
        self.assertEqual((await old.next()).header["code"], "unexpected_message")

    async def test_shutdown_finishes_requests_in_flight_and_refuses_new_ones(self) -> None:
        self.host.send({"type": "http_request", "id": 2, "method": "GET", "path": "/slow?ms=300&n=done", "headers": []})
        await asyncio.sleep(0.05)
        self.host.send({"type": "shutdown", "deadline_ms": 5000})
        self.host.send({"type": "http_request", "id": 3, "method": "GET", "path": "/slow?ms=1", "headers": []})
        refused = await self.host.next()
        self.assertEqual((refused.header["id"], refused.header["code"]), (3, "shutting_down"))
        self.assertFalse(os.path.exists(self.path), "the socket is removed at once")
        finished = await self.host.next()
        self.assertEqual((finished.header["id"], finished.body), (2, b"done"))
        self.assertEqual(await asyncio.wait_for(self.serving, 5), 0)


class ProcessTest(unittest.IsolatedAsyncioTestCase):
    """The example plugin as a process of its own, as torud runs it."""

    async def test_stopping_with_a_connection_open_exits_0_and_writes_no_traceback(self) -> None:
        example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "hello_v2.py")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "p.sock")
            env = {**os.environ, "TORU_PLUGIN_SOCKET": path, "TORU_LOG_LEVEL": "info"}
            child = await asyncio.create_subprocess_exec(
                sys.executable, example, env=env, stderr=asyncio.subprocess.PIPE
            )
            for _ in range(500):
                if os.path.exists(path):
                    break
                await asyncio.sleep(0.01)
            # Two connections: the one that asks to stop, and one that is only open.
            _, idle = await asyncio.open_unix_connection(path)
            reader, writer = await asyncio.open_unix_connection(path)
            try:
                writer.write(wire.encode(INIT))
                payload = await asyncio.wait_for(wire.read_payload(reader), 5)
                self.assertEqual(wire.decode(payload).header["type"], "init_ok")
                writer.write(wire.encode({"type": "shutdown", "deadline_ms": 2000}))
                await writer.drain()
                _, stderr = await asyncio.wait_for(child.communicate(), 10)
            finally:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
                writer.close()
                idle.close()
        self.assertEqual(child.returncode, 0, stderr.decode())
        self.assertNotIn("Traceback", stderr.decode())
        # Every line is a JSON log line.
        for line in stderr.decode().splitlines():
            self.assertIsInstance(json.loads(line), dict, line)


class WireTest(unittest.TestCase):
    def test_the_documented_frames(self) -> None:
        ping = bytes.fromhex("0000001a000000167b2274797065223a2270696e67222c226964223a317d")
        self.assertEqual(wire.encode({"type": "ping", "id": 1}), ping)
        frame = wire.decode(ping[4:])
        self.assertEqual(frame.header, {"type": "ping", "id": 1})
        kv_set = wire.encode({"type": "kv_set", "id": 1, "key": "greeting"}, b"hi")
        self.assertEqual(kv_set[:8], bytes.fromhex("0000002f00000029"))
        self.assertEqual(kv_set[-2:], b"hi")

    def test_a_frame_over_the_limit_is_never_written(self) -> None:
        with self.assertRaises(ValueError):
            wire.encode({"type": "http_response"}, b"x" * wire.MAX_FRAME)


if __name__ == "__main__":
    unittest.main()
