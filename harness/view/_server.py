"""Serving the viewer on loopback: the page, and any request's detail on demand.

A file embeds the detail of a bounded number of requests (`harness.view.payload`); served,
the page asks ``GET /api/detail?run=R&row=N`` for the others (`harness.view.detail`). The
server binds 127.0.0.1 only, answers GET and HEAD, and refuses a Host header other than
its own address (so a web page cannot reach it through DNS rebinding). Standard library
only: `http.server` with a thread per connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harness.view._data import Run, detail

__all__ = ["HOST", "make_server"]

HOST = "127.0.0.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, runs: Sequence[Run], page: str) -> None:
        super().__init__((HOST, port), _Handler)
        self.runs = list(runs)
        self.page = page.encode("utf-8")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "evalx-view"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the URL, not a line per request."""

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        port = self.server.server_address[1]
        if self.headers.get("Host", "") not in (f"{HOST}:{port}", f"localhost:{port}"):
            self._send(HTTPStatus.FORBIDDEN, b"host not allowed\n", "text/plain", head)
            return
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html", head)
        elif url.path == "/api/detail":
            status, body = self._detail(parse_qs(url.query))
            self._send(status, json.dumps(body, allow_nan=False).encode(), "application/json", head)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)

    def _detail(self, query: dict[str, list[str]]) -> tuple[HTTPStatus, Any]:
        try:
            r, row = int(query["run"][0]), int(query["row"][0])
            run = self.server.runs[r] if r >= 0 else None
        except (KeyError, ValueError, IndexError):
            return HTTPStatus.BAD_REQUEST, {"error": "expected ?run=R&row=N"}
        if run is None:
            return HTTPStatus.BAD_REQUEST, {"error": "no such run"}
        try:
            return HTTPStatus.OK, detail(run, row)
        except IndexError:
            return HTTPStatus.NOT_FOUND, {"error": f"no row {row}"}

    def _send(self, status: HTTPStatus, body: bytes, kind: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if not head:
            self.wfile.write(body)


def make_server(runs: Sequence[Run], page: str, port: int = 0) -> _Server:
    """A server bound to 127.0.0.1:`port` (0: a free port; its `url` says which) for `page`
    and the detail of any request of `runs`; run it with ``serve_forever()``.
    `OSError` when the port cannot be bound."""
    return _Server(port, runs, page)
