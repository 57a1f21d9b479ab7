"""toru_plugin: Toru plugins in Python, protocol 2, standard library only.

A complete plugin::

    from toru_plugin import Plugin, Request, Response, run

    plugin = Plugin(id="greeter", name="Greeter", version="0.1.0", route="/greeter")

    @plugin.on("GET", "/")
    async def hello(req: Request) -> Response:
        visits = int(await plugin.ctx.kv.get_text("visits") or 0) + 1
        await plugin.ctx.kv.set("visits", str(visits))
        return Response.json({"greeting": f"Hello, {req.query('name', 'world')}!", "visits": visits})

    if __name__ == "__main__":
        raise SystemExit(run(plugin))
"""

from . import log
from .http import HttpError, Request, Response
from .runtime import (
    KV_TIMEOUT,
    PROTOCOL_VERSION,
    SIGNAL_DEADLINE,
    SOCKET_ENV,
    Context,
    Kv,
    KvError,
    Limits,
    Plugin,
    run,
)

__all__ = [
    "KV_TIMEOUT",
    "PROTOCOL_VERSION",
    "SIGNAL_DEADLINE",
    "SOCKET_ENV",
    "Context",
    "HttpError",
    "Kv",
    "KvError",
    "Limits",
    "Plugin",
    "Request",
    "Response",
    "log",
    "run",
]
__version__ = "0.2.0"
