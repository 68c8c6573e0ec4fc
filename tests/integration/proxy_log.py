"""What passed through nginx, from its access log (format in nginx.conf.template)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

# ... "$request" $status $body_bytes_sent $request_length $request_time "$http_user_agent" ...
_LINE = re.compile(r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<sent>\d+) (?P<received>\d+) [\d.]+ "')


@dataclass
class Traffic:
    requests: list[str]
    bytes_in: int
    bytes_out: int
    largest_response: int


class ProxyLog:
    """Marks a point in nginx's access log and sums what came through after it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def since(self) -> Traffic:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        matches = [m for m in map(_LINE.search, text.splitlines()) if m]
        return Traffic(
            requests=[m["request"] for m in matches],
            bytes_in=sum(int(m["received"]) for m in matches),
            bytes_out=sum(int(m["sent"]) for m in matches),
            largest_response=max((int(m["sent"]) for m in matches), default=0),
        )


def logged_text(path: Path, needle: str, timeout: float = 10.0) -> str:
    """The log once it holds `needle`: nginx writes a line only after its response went out."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace")
        if needle in text or time.monotonic() > deadline:
            assert needle in text, f"{needle!r} never reached {path}"
            return text
        time.sleep(0.05)
