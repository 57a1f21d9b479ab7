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
    try:
        for line in lines:
            if line.get("from") == "host":
                if "raw_hex" in line:
                    writer.write(bytes.fromhex(line["raw_hex"]))
                else:
                    writer.write(wire.encode(line["header"], bytes.fromhex(line.get("body_hex", ""))))
                await writer.drain()
            elif line.get("from") == "plugin":
                payload = await asyncio.wait_for(wire.read_payload(reader), 5)
                if line.get("closes"):
                    assert payload is None, f"expected the connection closed, got {payload!r}"
                    continue
                assert payload is not None, f"the connection closed; expected {line['header']}"
                got = wire.decode(payload).header
                assert matches(line["header"], got), f"expected {line['header']}, got {got}"
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
