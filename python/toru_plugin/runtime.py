"""The plugin's side of protocol 2 (docs/PROTOCOL.md section 5): the socket, one
multiplexed connection per host connection, concurrent handlers, the host's storage,
ping, cancel, and shutdown with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import log, wire
from .http import HttpError, Request, Response

#: The protocol this SDK speaks.
PROTOCOL_VERSION = 2
#: The environment variable naming the socket to listen on.
SOCKET_ENV = "TORU_PLUGIN_SOCKET"
#: How long a KV call waits for the host's answer.
KV_TIMEOUT = 30.0
#: The drain on SIGTERM or SIGINT, as a `shutdown` with this deadline.
SIGNAL_DEADLINE = 10.0

Handler = Callable[[Request], Awaitable[Response]]


class KvError(Exception):
    """A KV call the host refused or could not do: `code` is the protocol's
    (`invalid_key`, `too_large`, `storage`, ...; `timeout` when no answer came)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Limits:
    """What the host enforces (5.11)."""

    max_frame_len: int = wire.MAX_FRAME
    max_key_len: int = 1024
    max_value_len: int = 1024 * 1024
    max_list_keys: int = 1000


class Kv:
    """The plugin's own durable key-value storage, kept by the host. Values are bytes;
    failures raise KvError, never a silent None."""

    def __init__(self, runtime: _Runtime) -> None:
        self._runtime = runtime

    async def get(self, key: str) -> bytes | None:
        """The value, or None when the key is not set."""
        answer = await self._runtime.call({"type": "kv_get", "key": key})
        return answer.body if answer.header.get("found") else None

    async def get_text(self, key: str) -> str | None:
        value = await self.get(key)
        return None if value is None else value.decode()

    async def set(self, key: str, value: bytes | str) -> None:
        """Stores `value` durably (the host answers once it is committed)."""
        body = value.encode() if isinstance(value, str) else bytes(value)
        await self._runtime.call({"type": "kv_set", "key": key}, body)

    async def delete(self, key: str) -> bool:
        """Whether the key was set."""
        answer = await self._runtime.call({"type": "kv_delete", "key": key})
        return bool(answer.header.get("existed"))

    async def list_page(
        self, prefix: str = "", after: str | None = None, limit: int | None = None
    ) -> tuple[list[str], str | None]:
        """One page of the keys starting with `prefix`, after `after`: (keys, next);
        `next` is None on the last page, else what to pass as `after`."""
        answer = await self._runtime.call(
            {"type": "kv_list", "prefix": prefix, "after": after, "limit": limit}
        )
        keys = answer.header.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise KvError("bad_message", "the host's kv_keys has no list of keys")
        return keys, answer.header.get("next")

    async def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix`, page after page."""
        keys: list[str] = []
        after = None
        while True:
            page, after = await self.list_page(prefix, after)
            keys.extend(page)
            if after is None:
                return keys


@dataclass
class Context:
    """What `init` told the plugin."""

    instance_id: str
    plugin_id: str
    config: dict[str, Any]
    limits: Limits
    kv: Kv
    license: str | None = None


@dataclass
class Plugin:
    """A plugin: who it is (printed by `--metadata`) and its handlers.

    ``@plugin.on("GET", "/")`` registers a handler for one method and path (the
    path without its query string); ``@plugin.on("GET", "/notes/", prefix=True)``
    one for every path under a prefix; ``@plugin.fallback`` one for anything else
    (404 without). ``@plugin.on_init`` runs once, with the Context, before the first
    request. Handlers are ``async def f(req) -> Response`` and run concurrently;
    ``plugin.ctx`` is the Context once ``init`` has run.
    """

    id: str
    name: str
    version: str
    route: str
    author: str | None = None
    icon: str = "🧩"
    description: str | None = None
    _routes: list[tuple[str, str, bool, Handler]] = field(default_factory=list, repr=False)
    _fallback: Handler | None = field(default=None, repr=False)
    _on_init: Callable[[Context], Awaitable[None]] | None = field(default=None, repr=False)
    _ctx: Context | None = field(default=None, repr=False)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "author": self.author,
            "icon": self.icon,
            "route": self.route,
            "protocol": PROTOCOL_VERSION,
        }
        if self.description is not None:
            meta["description"] = self.description
        return meta

    @property
    def ctx(self) -> Context:
        """The Context `init` gave; RuntimeError (a 500) before it."""
        if self._ctx is None:
            raise RuntimeError("not initialized")
        return self._ctx

    def on(self, method: str, path: str, prefix: bool = False) -> Callable[[Handler], Handler]:
        """Registers a handler for `method` on `path` (or every path under it)."""

        def register(handler: Handler) -> Handler:
            self._routes.append((method.upper(), path, prefix, handler))
            return handler

        return register

    def fallback(self, handler: Handler) -> Handler:
        self._fallback = handler
        return handler

    def on_init(self, hook: Callable[[Context], Awaitable[None]]) -> Callable[[Context], Awaitable[None]]:
        self._on_init = hook
        return hook

    async def dispatch(self, req: Request) -> Response:
        path = req.path_only
        known_path = False
        for method, route, prefix, handler in self._routes:
            if path == route or (prefix and path.startswith(route)):
                known_path = True
                if method == req.method.upper():
                    return await handler(req)
        if self._fallback is not None:
            return await self._fallback(req)
        if known_path:
            return Response.error(405, f"{req.method} is not allowed on {path}")
        return Response.not_found()


class _Connection:
    """One connection from the host: its reader, its requests in flight both ways."""

    def __init__(self, runtime: _Runtime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.runtime = runtime
        self.reader = reader
        self.writer = writer
        self.initialized = False
        self.next_id = 1
        self.pending: dict[int, asyncio.Future[wire.Frame]] = {}
        self.handlers: dict[int, asyncio.Task[None]] = {}
        self.closed = False
        # Frames sent in this turn of the event loop, written together at its end.
        self.outgoing: list[bytes] = []

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        """One frame, whole, so frames never interleave. The frames sent in one turn of
        the event loop go out in one write at its end: under load many answers share
        a system call, as in the Rust SDK."""
        if self.closed:
            return
        self.outgoing.append(wire.encode(header, body))
        if len(self.outgoing) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Writes the frames sent so far."""
        if not self.outgoing or self.writer.is_closing():
            self.outgoing.clear()
            return
        data = self.outgoing[0] if len(self.outgoing) == 1 else b"".join(self.outgoing)
        self.outgoing.clear()
        self.writer.write(data)

    def error(self, msg_id: int | None, code: str, message: str) -> None:
        self.send({"type": "error", "id": msg_id, "code": code, "message": message})

    async def call(self, header: dict[str, Any], body: bytes = b"") -> wire.Frame:
        msg_id = self.next_id
        self.next_id += 1
        future: asyncio.Future[wire.Frame] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        try:
            self.send({**header, "id": msg_id}, body)
            await self.writer.drain()
            answer = await asyncio.wait_for(future, KV_TIMEOUT)
        except asyncio.TimeoutError:
            raise KvError("timeout", f"no answer to {header['type']} within {KV_TIMEOUT:.0f} s") from None
        except (ConnectionError, asyncio.CancelledError) as e:
            if isinstance(e, asyncio.CancelledError) and not self.closed:
                raise
            raise KvError("not_connected", "the connection to the host closed") from None
        finally:
            self.pending.pop(msg_id, None)
        if answer.type == "error":
            raise KvError(str(answer.header.get("code", "unknown")), str(answer.header.get("message", "")))
        return answer

    async def serve(self) -> None:
        try:
            while True:
                try:
                    payload = await wire.read_payload(self.reader)
                except wire.FrameTooLarge as e:
                    log.warn("closing the connection", error=str(e))
                    return
                if payload is None:
                    return
                try:
                    frame = wire.decode(payload)
                except wire.BadFrame as e:
                    self.error(e.msg_id, "bad_message", str(e))
                    if not self.initialized:
                        return
                    continue
                if not self.receive(frame):
                    return
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.close()

    def receive(self, frame: wire.Frame) -> bool:
        """Acts on one message; False to close the connection."""
        kind, header = frame.type, frame.header
        msg_id = wire.message_id(header)
        if not self.initialized:
            if kind != "init":
                self.error(msg_id, "unexpected_message" if kind in wire.KNOWN else "unknown_type",
                           f"the first message must be init, not {kind}")
                return False
            protocol = header.get("protocol")
            if msg_id is None or not isinstance(protocol, int):
                self.error(msg_id, "bad_message", "init needs an integer id and protocol")
                return False
            if protocol < PROTOCOL_VERSION:
                self.error(msg_id, "unexpected_message", f"this plugin speaks protocol 2, the host {protocol}")
                return False
            self.initialized = True
            self.runtime.connections.append(self)
            task = asyncio.ensure_future(self.runtime.init(self, msg_id, header))
            self.runtime.tasks.add(task)
            task.add_done_callback(self.runtime.tasks.discard)
            return True
        if kind in wire.ANSWERS:
            future = self.pending.get(msg_id) if msg_id is not None else None
            if future is None or future.done():
                log.debug("an answer to no request of ours, ignored", type=kind, id=msg_id)
            else:
                future.set_result(frame)
            return True
        if kind == "ping":
            self.send({"type": "pong", "id": msg_id})
        elif kind == "http_request":
            self.http_request(msg_id, header, frame.body)
        elif kind == "cancel":
            task = self.handlers.get(msg_id) if msg_id is not None else None
            if task is not None:
                task.cancel()
        elif kind == "shutdown":
            deadline = header.get("deadline_ms")
            seconds = deadline / 1000 if isinstance(deadline, (int, float)) and deadline >= 0 else SIGNAL_DEADLINE
            self.runtime.begin_shutdown(seconds)
        elif kind == "init":
            self.error(msg_id, "unexpected_message", "this connection is initialized already")
        elif kind in wire.KNOWN:
            self.error(msg_id, "unexpected_message", f"a plugin does not take {kind}")
        else:
            self.error(msg_id, "unknown_type", f"unknown message type {kind!r}")
        return True

    def http_request(self, msg_id: int | None, header: dict[str, Any], body: bytes) -> None:
        method, path = header.get("method"), header.get("path")
        headers = wire.valid_headers(header.get("headers", []))
        if msg_id is None or not isinstance(method, str) or not isinstance(path, str) or headers is None:
            self.error(msg_id, "bad_message", "http_request needs an id, a method, a path and valid headers")
            return
        if msg_id in self.handlers:
            self.error(msg_id, "duplicate_id", f"request {msg_id} is in flight already")
            return
        if self.runtime.stopping.is_set():
            self.error(msg_id, "shutting_down", "the plugin is shutting down")
            return
        request = Request(method, path, headers, body)
        task = asyncio.ensure_future(self.answer(msg_id, request))
        self.handlers[msg_id] = task
        self.runtime.tasks.add(task)
        task.add_done_callback(lambda t: (self.handlers.pop(msg_id, None), self.runtime.tasks.discard(t)))

    async def answer(self, msg_id: int, request: Request) -> None:
        try:
            response = await checked(self.runtime, request) or await self.runtime.plugin.dispatch(request)
            if not isinstance(response, Response):
                raise TypeError(f"the handler returned {type(response).__name__}, not a Response")
        except asyncio.CancelledError:
            return  # the host gave up on it (cancel): no answer
        except HttpError as e:
            response = Response.error(e.status, e.message)
        except Exception as e:  # a failing handler answers 500; the plugin goes on
            log.error("request failed", error=f"{type(e).__name__}: {e}", path=request.path_only)
            response = Response.error(500, f"{type(e).__name__}: {e}")
        header = {"type": "http_response", "id": msg_id, "status": response.status,
                  "headers": [[k, v] for k, v in response.headers]}
        try:
            self.send(header, response.body)
        except ValueError as e:  # over the frame limit
            log.error("response too large", error=str(e), path=request.path_only)
            self.send({"type": "http_response", "id": msg_id, "status": 500,
                       "headers": [["content-type", "application/json"]]},
                      json.dumps({"error": "the response does not fit in one frame"}).encode())
        try:
            await self.writer.drain()
        except ConnectionError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self.handlers.values()):
            task.cancel()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the connection closed"))
        if self in self.runtime.connections:
            self.runtime.connections.remove(self)
        self.flush()
        self.writer.close()


#: Set by `toructl plugins check`, never by torud: the SDK then answers the checker's
#: two conventions itself (docs/PROTOCOL.md 9.3).
CHECK_ENV = "TORU_CHECK"


async def checked(runtime: _Runtime, request: Request) -> Response | None:
    """The answer to one of the checker's conventions, when the checker runs us."""
    if not runtime.checking or request.method != "POST":
        return None
    if request.path_only == "/.well-known/toru-check/echo":
        # `?wait_ms=N` keeps it in flight a while, for the scenarios that need one.
        wait = request.query("wait_ms", "0") or "0"
        await asyncio.sleep(min(int(wait), 10_000) / 1000 if wait.isdigit() else 0)
        return Response.bytes(request.body)
    if request.path_only == "/.well-known/toru-check/kv":
        kv = runtime.plugin.ctx.kv
        await kv.set("toru-check", request.body)
        await kv.set("toru-check/scratch", b"x")
        value = await kv.get("toru-check") or b""
        if "toru-check" not in await kv.list("toru-check"):
            return Response.error(500, "kv_list did not list the key just set")
        if not await kv.delete("toru-check/scratch") or await kv.get("toru-check/scratch") is not None:
            return Response.error(500, "kv_delete did not delete the key just set")
        try:
            await kv.set("", b"x")
            return Response.error(500, "an empty key was accepted")
        except KvError:
            pass
        return Response.bytes(value)
    return None


class _Runtime:
    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.connections: list[_Connection] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()
        self.deadline = SIGNAL_DEADLINE
        self.init_lock = asyncio.Lock()
        self.init_error: str | None = None
        self.server: asyncio.base_events.Server | None = None
        self.socket_path = ""
        # Read once: only `toructl plugins check` sets it, at the plugin's start.
        self.checking = os.environ.get(CHECK_ENV) == "1"

    async def call(self, header: dict[str, Any], body: bytes = b"") -> wire.Frame:
        """A KV call over the newest open connection."""
        for connection in reversed(self.connections):
            if not connection.closed:
                return await connection.call(header, body)
        raise KvError("not_connected", "no connection to the host")

    async def init(self, connection: _Connection, msg_id: int, header: dict[str, Any]) -> None:
        """Runs the plugin's own initialization once per process, then `init_ok`."""
        async with self.init_lock:
            if self.plugin._ctx is None and self.init_error is None:
                limits = header.get("limits") if isinstance(header.get("limits"), dict) else {}
                config = header.get("config") if isinstance(header.get("config"), dict) else {}
                ctx = Context(
                    instance_id=str(header.get("instance_id", "")),
                    plugin_id=str(header.get("plugin_id", self.plugin.id)),
                    config=config,
                    limits=Limits(**{k: v for k, v in limits.items() if k in Limits.__dataclass_fields__ and isinstance(v, int)}),
                    kv=Kv(self),
                    license=header.get("license") if isinstance(header.get("license"), str) else None,
                )
                try:
                    if self.plugin._on_init is not None:
                        await self.plugin._on_init(ctx)
                    self.plugin._ctx = ctx
                    log.info("initialized", instance_id=ctx.instance_id)
                except Exception as e:
                    self.init_error = f"{type(e).__name__}: {e}"
        if self.init_error is not None:
            connection.error(msg_id, "init_failed", self.init_error)
            log.error("init failed", error=self.init_error)
            await connection.writer.drain()
            self.begin_shutdown(0)
            return
        connection.send({"type": "init_ok", "id": msg_id, "protocol": PROTOCOL_VERSION})
        await connection.writer.drain()

    def begin_shutdown(self, deadline: float) -> None:
        """Only the first `shutdown` (or signal) counts."""
        if self.stopping.is_set():
            return
        self.deadline = deadline
        self.stopping.set()
        if self.server is not None:
            self.server.close()
        remove_socket(self.socket_path)

    async def run(self, path: str) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.begin_shutdown, SIGNAL_DEADLINE)
        self.socket_path = path
        self.server = await listen(path, self.accept)
        log.info("listening", socket=path)
        await self.stopping.wait()
        handlers = [t for c in self.connections for t in c.handlers.values()]
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=self.deadline)
            for task in late:
                task.cancel()
        for connection in list(self.connections):
            try:
                connection.flush()
                await asyncio.wait_for(connection.writer.drain(), 1)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            connection.close()
        log.info("stopped")
        return 1 if self.init_error is not None else 0

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopping.is_set():
            writer.close()
            return
        try:
            await _Connection(self, reader, writer).serve()
        except asyncio.CancelledError:
            # asyncio.run() cancels the connections still open when the plugin stops;
            # asyncio's stream callback would then print the cancellation as a
            # traceback (Python 3.11). A connection ends here, so nothing is lost.
            writer.close()


async def listen(path: str, accept: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> asyncio.base_events.Server:
    """Listens on `path` (its folder 0700 when made here, the socket 0600), replacing a
    stale socket file but nothing else."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(accept, path, limit=wire.MAX_FRAME + 8)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def remove_socket(path: str) -> None:
    try:
        if path and stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def run(plugin: Plugin, argv: list[str] | None = None) -> int:
    """The plugin's main: `--metadata` prints its metadata; otherwise it serves on
    `$TORU_PLUGIN_SOCKET` until the host's `shutdown` or SIGTERM, and returns the exit
    status (0; 1 when its initialization failed; 2 for bad arguments)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--metadata"]:
        print(json.dumps(plugin.metadata(), ensure_ascii=False))
        return 0
    if args:
        print(f"usage: {os.path.basename(sys.argv[0])} [--metadata]", file=sys.stderr)
        return 2
    path = os.environ.get(SOCKET_ENV) or f"/tmp/toru-plugins/{plugin.id}.sock"
    return asyncio.run(_Runtime(plugin).run(path))
