"""What a handler gets and gives back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class HttpError(Exception):
    """Raise it in a handler to answer `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    """An HTTP request forwarded by the host. `path` is below the plugin's route,
    starting with `/`, query kept: `/kv/a?x=1`."""

    method: str
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def path_only(self) -> str:
        """The path without its query string (still percent-encoded)."""
        return urlsplit(self.path).path

    def path_after(self, prefix: str) -> str | None:
        """What follows `prefix` in the path, percent-decoded (`/notes/my%20note` ->
        `my note` for `/notes/`); None when the path does not start with it."""
        path = self.path_only
        if not path.startswith(prefix):
            return None
        return unquote(path[len(prefix) :], errors="strict")

    def query(self, name: str, default: str | None = None) -> str | None:
        """The first query parameter `name`, decoded."""
        values = parse_qs(urlsplit(self.path).query, keep_blank_values=True).get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive)."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def text(self) -> str:
        """The body as UTF-8; a 400 when it is not."""
        try:
            return self.body.decode()
        except UnicodeDecodeError:
            raise HttpError(400, "request body is not valid UTF-8") from None

    def json(self) -> Any:
        """The body as JSON; a 400 naming the problem when it is not."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HttpError(400, f"invalid JSON body: {e}") from None


@dataclass
class Response:
    """A plugin's answer. `headers` may repeat a name (`set-cookie`)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def bytes(cls, body: bytes, content_type: str = "application/octet-stream", status: int = 200) -> Response:
        return cls(status, [("content-type", content_type)], bytes(body))

    @classmethod
    def text(cls, body: str, status: int = 200) -> Response:
        return cls(status, [("content-type", "text/plain; charset=utf-8")], body.encode())

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, [("content-type", "application/json")], body)

    @classmethod
    def error(cls, status: int, message: str) -> Response:
        """`status` with `{"error": message}`, the shape the host uses."""
        return cls.json({"error": message}, status)

    @classmethod
    def not_found(cls) -> Response:
        return cls.error(404, "not found")

    def with_header(self, name: str, value: str) -> Response:
        self.headers.append((name, value))
        return self
