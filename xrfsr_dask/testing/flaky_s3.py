"""An HTTP proxy in front of an S3 server that injects faults, for reliability tests.

:class:`FlakyProxy` listens on 127.0.0.1, forwards every request to the
upstream S3 endpoint (a moto server in the tests) and relays the answer,
except where its ``rule`` decides otherwise: answer with an S3 error (503
``SlowDown``, 500 ``InternalError``, 403 ``AccessDenied``), or drop the
connection without answering, as a failing load balancer does. Every
decision is counted, so a test can say how many faults it injected.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Fault", "FlakyProxy"]

Fault = tuple[int, str] | str | None
"""What to do with a request: ``None`` (forward), ``"drop"``, or ``(status, S3 error code)``."""

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FlakyProxy

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.decide(self.command, self.path)
        if fault == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if isinstance(fault, tuple):
            status, code = fault
            payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                       f"<Message>injected by FlakyProxy</Message></Error>").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "expect"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            # A HEAD answer's Content-Length is the object's size: keep it.
            if key.lower() not in _HOP_BY_HOP and (key.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


class FlakyProxy(ThreadingHTTPServer):
    """Forward to ``upstream`` (``http://host:port``), injecting the faults ``rule`` chooses.

    ``rule(method, path, n)`` gets the request's method, path and its
    1-based number among all requests, and returns a :data:`Fault`.
    ``injected`` counts the faults by kind; ``requests`` counts all.
    Use as a context manager; ``endpoint`` is the URL to give s3fs.
    """

    daemon_threads = True

    def __init__(self, upstream: str, rule: Callable[[str, str, int], Fault]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port
        self.rule = rule
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def decide(self, method: str, path: str) -> Fault:
        with self._lock:
            self.requests += 1
            fault = self.rule(method, path, self.requests)
            if fault is not None:
                self.injected["drop" if fault == "drop" else f"{fault[0]} {fault[1]}"] += 1
        return fault

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
