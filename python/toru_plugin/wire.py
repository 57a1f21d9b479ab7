"""Protocol 2's frames (docs/PROTOCOL.md, sections 3 and 5.3): a 4-byte length, a
4-byte header length, a JSON header, raw body bytes."""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from typing import Any

#: The largest length prefix either side may send (16 MiB).
MAX_FRAME = 16 * 1024 * 1024

#: The answers: always looked up among the receiver's own requests.
ANSWERS = frozenset(
    {"init_ok", "http_response", "pong", "kv_value", "kv_ok", "kv_deleted", "kv_keys", "error"}
)
#: What a plugin accepts besides answers.
PLUGIN_ACCEPTS = frozenset({"init", "http_request", "cancel", "ping", "shutdown"})
#: Every type of this version.
KNOWN = ANSWERS | PLUGIN_ACCEPTS | frozenset({"kv_get", "kv_set", "kv_delete", "kv_list"})


class FrameTooLarge(Exception):
    """A length prefix above MAX_FRAME: the stream cannot be cut into frames any more."""


class BadFrame(Exception):
    """A frame delimited correctly whose payload is not a protocol-2 message; `msg_id`
    is the header's id when one could be read."""

    def __init__(self, message: str, msg_id: int | None = None) -> None:
        super().__init__(message)
        self.msg_id = msg_id


@dataclass
class Frame:
    """One message: its JSON header and its body."""

    header: dict[str, Any]
    body: bytes = b""

    @property
    def type(self) -> str:
        return str(self.header.get("type"))


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    """The bytes of one frame; ValueError when it would be larger than MAX_FRAME."""
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    n = 4 + len(head) + len(body)
    if n > MAX_FRAME:
        raise ValueError(f"a frame of {n} bytes is over the limit of {MAX_FRAME}")
    return struct.pack(">II", n, len(head)) + head + body


async def read_payload(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload; None at a clean end of stream. FrameTooLarge before
    anything of an oversized frame is read; IncompleteReadError for a frame cut short."""
    try:
        prefix = await reader.readexactly(4)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    (n,) = struct.unpack(">I", prefix)
    if n > MAX_FRAME:
        raise FrameTooLarge(f"length prefix {n} is over {MAX_FRAME}")
    return await reader.readexactly(n)


def decode(payload: bytes) -> Frame:
    """The message in a payload; BadFrame (with the id when readable) otherwise."""
    if payload[:1] == b"{":
        raise BadFrame("frame is a bare JSON document: the peer speaks protocol 1, not 2")
    if len(payload) < 4:
        raise BadFrame(f"a frame of {len(payload)} bytes has no room for its header length")
    (h,) = struct.unpack(">I", payload[:4])
    if h > len(payload) - 4:
        raise BadFrame(f"header length {h} is more than the {len(payload) - 4} bytes that follow")
    try:
        header = json.loads(payload[4 : 4 + h].decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise BadFrame(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise BadFrame("header is not a JSON object")
    return Frame(header, bytes(payload[4 + h :]))


def message_id(header: dict[str, Any]) -> int | None:
    """The header's id when it is an unsigned integer."""
    value = header.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    return None


def valid_headers(value: Any) -> list[tuple[str, str]] | None:
    """`[[name, value], ...]` as HTTP allows it (5.3), or None."""
    if not isinstance(value, list):
        return None
    pairs = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2):
            return None
        name, text = pair
        if not (isinstance(name, str) and isinstance(text, str) and is_token(name)):
            return None
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text):
            return None
        pairs.append((name, text))
    return pairs


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def is_token(name: str) -> bool:
    """An HTTP field name."""
    return bool(name) and all(c in _TOKEN for c in name)
