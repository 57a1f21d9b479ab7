"""The scenarios of conformance/ (exact frames, both sides), replayed against the
Python SDK with the test as the host."""

import asyncio
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ["TORU_LOG_LEVEL"] = "error"
# The scenarios that need the checker's conventions get them (docs/PROTOCOL.md 9.3).
os.environ["TORU_CHECK"] = "1"

from toru_plugin import Plugin, Response  # noqa: E402
from toru_plugin import runtime, wire  # noqa: E402

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "..", "conformance")


def matches(expected: dict, got: dict) -> bool:
    for key, value in expected.items():
        if got.get(key) != value:
            return False
    return got.get("type") != "error" or isinstance(got.get("message"), str)


async def replay(path: str, lines: list[dict]) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    ids: dict[str, int] = {}  # the ids the plugin chose, by their `id_as` names
    try:
        for line in lines:
            if line.get("from") == "host" and "wait_ms" in line:
                await asyncio.sleep(line["wait_ms"] / 1000)
            elif line.get("from") == "host":
                if "raw_hex" in line:
                    writer.write(bytes.fromhex(line["raw_hex"]))
                else:
                    header = dict(line["header"])
                    if isinstance(header.get("id"), str) and header["id"].startswith("$"):
                        header["id"] = ids[header["id"][1:]]
                    writer.write(wire.encode(header, bytes.fromhex(line.get("body_hex", ""))))
                await writer.drain()
            elif line.get("from") == "plugin":
                payload = await asyncio.wait_for(wire.read_payload(reader), 5)
                if line.get("closes"):
                    assert payload is None, f"expected the connection closed, got {payload!r}"
                    continue
                assert payload is not None, f"the connection closed; expected {line['header']}"
                got = wire.decode(payload)
                assert matches(line["header"], got.header), f"expected {line['header']}, got {got.header}"
                if "body_hex" in line:
                    assert got.body == bytes.fromhex(line["body_hex"]), f"{got.header}: body {got.body!r}"
                if "id_as" in line:
                    ids[line["id_as"]] = got.header["id"]
    finally:
        writer.close()


class ConformanceTest(unittest.IsolatedAsyncioTestCase):
    async def test_every_scenario(self) -> None:
        files = sorted(f for f in os.listdir(SCENARIOS) if f.endswith(".jsonl"))
        self.assertTrue(files)
        for name in files:
            with open(os.path.join(SCENARIOS, name)) as f:
                lines = [json.loads(line) for line in f if line.strip()]
            with self.subTest(scenario=name), tempfile.TemporaryDirectory() as folder:
                plugin = Plugin(id="t", name="T", version="1", route="/t")

                @plugin.fallback
                async def anything(req):
                    return Response.text("ok")

                serving = runtime._Runtime(plugin)
                path = os.path.join(folder, "t.sock")
                task = asyncio.ensure_future(serving.run(path))
                for _ in range(100):
                    if os.path.exists(path):
                        break
                    await asyncio.sleep(0.01)
                try:
                    await replay(path, lines)
                finally:
                    serving.begin_shutdown(0)
                    await asyncio.wait_for(task, 5)


if __name__ == "__main__":
    unittest.main()
