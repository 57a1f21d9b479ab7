#!/usr/bin/env python3
"""hello-py2: the example plugin on the Python SDK (protocol 2), the Rust hello's routes.

| request          | answer                                            |
|------------------|---------------------------------------------------|
| GET /            | JSON greeting with the host's instance id         |
| POST /echo       | the request body, byte for byte, same type        |
| PUT /kv/{key}    | stores the body under key in the host's storage   |
| GET /kv/{key}    | the stored value, or 404                          |
| DELETE /kv/{key} | 204, or 404 when it was not set                   |
| GET /slow?ms=N   | answers after N ms (at most 60 s)                 |
| GET /fail        | raises: the SDK answers 500 and the plugin goes on |
"""

import asyncio
import os
import sys

try:
    import toru_plugin
except ImportError:  # run from a source checkout: the SDK is python/ at its top
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "python"))
    import toru_plugin

from toru_plugin import HttpError, Plugin, Request, Response, log, run

plugin = Plugin(id="hello-py2", name="Hello (Python, protocol 2)", version="0.2.0",
                route="/hello-py2", author="The Toru developers", icon="🐍")


@plugin.on("GET", "/")
async def greet(req: Request) -> Response:
    return Response.json({"message": "Hello from Python!", "plugin": "hello-py2",
                          "instance_id": plugin.ctx.instance_id})


@plugin.on("POST", "/echo")
async def echo(req: Request) -> Response:
    return Response.bytes(req.body, req.header("content-type") or "application/octet-stream")


@plugin.on("GET", "/slow")
async def slow(req: Request) -> Response:
    try:
        ms = min(int(req.query("ms", "100") or 100), 60_000)
    except ValueError:
        raise HttpError(400, "ms must be a whole number") from None
    await asyncio.sleep(ms / 1000)
    return Response.json({"slept_ms": ms})


@plugin.on("GET", "/fail")
async def fail(req: Request) -> Response:
    raise RuntimeError("this route fails on purpose")


@plugin.on("PUT", "/kv/", prefix=True)
async def put(req: Request) -> Response:
    key = req.path_after("/kv/") or ""
    await plugin.ctx.kv.set(key, req.body)
    log.info("stored", key=key, bytes=len(req.body))
    return Response(204)


@plugin.on("GET", "/kv/", prefix=True)
async def get(req: Request) -> Response:
    value = await plugin.ctx.kv.get(req.path_after("/kv/") or "")
    return Response.not_found() if value is None else Response.bytes(value)


@plugin.on("DELETE", "/kv/", prefix=True)
async def delete(req: Request) -> Response:
    existed = await plugin.ctx.kv.delete(req.path_after("/kv/") or "")
    return Response(204) if existed else Response.not_found()


if __name__ == "__main__":
    sys.exit(run(plugin))
