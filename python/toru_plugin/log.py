"""Logs as the host reads them (docs/PROTOCOL.md 2.5): one JSON object per line on
stderr, with a level and any fields: `log.info("stored note", note=name)`. Each field
reaches `toructl plugins logs`, the logs API and the journal (`TORU_FIELD_NOTE`).
`TORU_LOG_LEVEL` (`error`, `warn`, `info`, `debug`) sets what is written; `info` by
default."""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any

_LEVELS = {"error": 0, "warn": 1, "info": 2, "debug": 3, "trace": 4}


def _threshold() -> int:
    return _LEVELS.get(os.environ.get("TORU_LOG_LEVEL", "info").lower(), 2)


def write(level: str, message: str, **fields: Any) -> None:
    """One line at `level` (`error`, `warn`, `info`, `debug`, `trace`)."""
    if _LEVELS.get(level, 2) > _threshold():
        return
    line = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        "level": level.upper(),
        "message": message,
    }
    for key, value in fields.items():
        line.setdefault(key, value)
    try:
        print(json.dumps(line, default=str, ensure_ascii=False), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr is gone: nothing to tell, and nothing to fail over it


def error(message: str, **fields: Any) -> None:
    write("error", message, **fields)


def warn(message: str, **fields: Any) -> None:
    write("warn", message, **fields)


def info(message: str, **fields: Any) -> None:
    write("info", message, **fields)


def debug(message: str, **fields: Any) -> None:
    write("debug", message, **fields)
