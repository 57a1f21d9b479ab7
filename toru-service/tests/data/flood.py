"""Floods stderr for tests/journald.rs: ten 10 MB lines, then 100 MB of
short lines, then, after a pause, one last line. Writes "ok" to the file
named by its argument if every write succeeded, or the error."""

import sys
import time

result = sys.argv[1]
out = sys.stderr.buffer
try:
    long_line = b"L" * 10_000_000 + b"\n"
    for _ in range(10):
        out.write(long_line)
    chunk = (b"s" * 99 + b"\n") * 655
    for _ in range(100_000_000 // len(chunk)):
        out.write(chunk)
    out.flush()
    time.sleep(2)
    out.write(b"FINAL line after the flood\n")
    out.flush()
    outcome = "ok"
except OSError as e:
    outcome = f"error {e!r}"
with open(result, "w") as f:
    f.write(outcome + "\n")
