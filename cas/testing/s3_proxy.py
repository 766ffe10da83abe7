"""A loopback HTTP proxy in front of an S3 server that injects faults, for tests and the fault table.

Each request is forwarded to the upstream server unless a fault rule matches it. Rules match a
method and a substring of the path (and query), let the first ``skip`` matching requests through,
then fire ``times`` times (None: for ever):

- ``drop_answer``: forward the request (it takes effect upstream), then close the connection
  without answering: the "lost answer" a client retries;
- ``reset``: close the connection (RST) without forwarding;
- ``slowdown``: answer 503 SlowDown (S3's "reduce your request rate") without forwarding;
- ``cut_body``: forward, then send the answer's headers and half its body, and close;
- ``stall``: forward, then wait ``stall_seconds`` before answering (a client times out first);
- ``ignore_range``: forward without the request's Range header, as a store that does not support
  ranged reads answers 200 with the whole object.

``hits`` counts how many times each action fired; ``requests`` logs (method, path) of every request.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "ACTIONS"]

ACTIONS = ("drop_answer", "reset", "slowdown", "cut_body", "stall", "ignore_range")
_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


@dataclass
class _Rule:
    action: str
    method: str | None
    path_contains: str
    times: int | None
    skip: int = 0


class FaultProxy:
    """``FaultProxy(upstream_endpoint)``; a context manager; ``endpoint`` is its own URL."""

    def __init__(self, upstream: str, *, stall_seconds: float = 5.0) -> None:
        up = urlsplit(upstream)
        self.upstream_host, self.upstream_port = up.hostname, up.port or 80
        self.stall_seconds = stall_seconds
        self.rules: list[_Rule] = []
        self.hits: dict[str, int] = {a: 0 for a in ACTIONS}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="cas-s3-proxy", daemon=True)

    def add(self, action: str, *, method: str | None = None, path_contains: str = "", times: int | None = 1,
            skip: int = 0) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown fault {action!r}; one of {', '.join(ACTIONS)}")
        with self._lock:
            self.rules.append(_Rule(action, method, path_contains, times, skip))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _match(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests.append((method, path))
            for rule in self.rules:
                if (rule.times is None or rule.times > 0) and rule.method in (None, method) \
                        and rule.path_contains in path:
                    if rule.skip > 0:
                        rule.skip -= 1
                        continue
                    if rule.times is not None:
                        rule.times -= 1
                    self.hits[rule.action] += 1
                    return rule.action
        return None

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up on a stalled or cut answer closes first: expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass  # the connection was aborted on purpose

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        action = self.owner._match(self.command, self.path)
        if action == "reset":
            self._abort()
            return
        if action == "slowdown":
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(_SLOWDOWN)))
            self.end_headers()
            self.wfile.write(_SLOWDOWN)
            return
        conn = http.client.HTTPConnection(self.owner.upstream_host, self.owner.upstream_port, timeout=60)
        try:
            dropped = ("connection", "expect", "range") if action == "ignore_range" else ("connection", "expect")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            status, reason, answer_headers = answer.status, answer.reason, answer.getheaders()
        finally:
            conn.close()
        if action == "drop_answer":
            self._abort()
            return
        if action == "stall":
            time.sleep(self.owner.stall_seconds)
        self.send_response(status, reason)
        for name, value in answer_headers:
            if name.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                self.send_header(name, value)
        if self.command == "HEAD":  # the size of the object a GET would send
            self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if action == "cut_body" and data:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._abort()
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    def _abort(self) -> None:
        """Close the connection with a reset, answering nothing more."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
