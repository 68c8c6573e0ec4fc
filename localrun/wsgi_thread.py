"""A WSGI app served from a daemon thread on loopback: the local stand-ins for AWS endpoints use it."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localrun.process import LOOPBACK

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class ThreadedWsgi:
    """`start()`/`stop()` or ``with``; serves on `url` (port 0: a free one)."""

    def __init__(self, app: WSGIApplication, *, name: str, host: str = LOOPBACK, port: int = 0) -> None:
        self.host = host
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
        self.port = int(self._server.server_port)
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"{self._name}-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


class QuietHandler(WSGIRequestHandler):
    """The apps log their own line per request (no query strings, no signing headers)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass
