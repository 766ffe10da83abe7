"""HTTP plumbing shared by the NameNode and DataNode endpoints.

One ``Node`` is one listening port served by a thread per connection. The handler base class
parses the request, applies network emulation and pre-operation faults, streams bodies in large
blocks (``Content-Length`` or chunked), and writes responses; subclasses implement the ops.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import traceback
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .errors import RemoteError, dumps
from .faults import Fault
from .params import hdfs_path, parse_query

BLOCK = 1 << 20  # body I/O granularity: large enough that per-block Python work is negligible


class ClientGone(Exception):
    """The client closed the connection before its request body was complete."""


class Answered(Exception):
    """The request has been answered (or hung up on) already; unwind quietly."""


@dataclass
class Request:
    method: str
    op: str
    path: str
    params: dict[str, str]
    user: str


class Pacer:
    """Token pacing for one body transfer: sleeps so that ``bytes / elapsed <= bandwidth``.

    The bandwidth is read before every block, so changing it at run time takes effect at once.
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.start = time.monotonic()
        self.moved = 0

    def block_size(self) -> int:
        bandwidth = self.cluster.bandwidth
        return BLOCK if not bandwidth else max(4096, min(BLOCK, int(bandwidth / 20)))

    def account(self, nbytes: int) -> None:
        self.moved += nbytes
        bandwidth = self.cluster.bandwidth
        if bandwidth:
            delay = self.start + self.moved / bandwidth - time.monotonic()
            if delay > 0:
                self.cluster.stopping.wait(delay)


class NodeServer(ThreadingHTTPServer):
    """A threaded HTTP server that knows its live connections, so it can drop them on demand."""

    daemon_threads = True
    allow_reuse_address = True  # datanode_up() rebinds the same port right after a close
    request_queue_size = 128

    def __init__(self, address, handler, cluster, role: str):
        self.cluster, self.role = cluster, role
        self.connections: set[socket.socket] = set()
        self.aborted: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take seconds.
        socket.socket.setsockopt(self.socket, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.conn_lock:
            self.connections.discard(request)
            abort = request in self.aborted
            self.aborted.discard(request)
        if abort:  # RST instead of FIN: the client sees a reset, as with a crashed server
            try:
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            request.close()
        else:
            super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.conn_lock:
            live = list(self.connections)
        for conn in live:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Node:
    """One endpoint (NameNode or a DataNode) that can be stopped and restarted on its port."""

    def __init__(self, cluster, role: str, handler, host: str, port: int = 0):
        self.cluster, self.role, self.handler, self.host, self.port = cluster, role, handler, host, port
        self.httpd: NodeServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def up(self) -> bool:
        return self.httpd is not None

    def start(self) -> None:
        self.httpd = NodeServer((self.host, self.port), self.handler, self.cluster, self.role)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"webhdfs-{self.role}-{self.port}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Close the port (new connections are refused) and cut every open connection."""
        if self.httpd is None:
            return
        httpd, self.httpd = self.httpd, None
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        self.thread.join()


class WebHdfsHandler(BaseHTTPRequestHandler):
    """Request parsing, emulation, faults and body I/O; subclasses define ``handle_op``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small header and body writes must not wait for delayed ACKs
    timeout = 120  # an idle or stuck client cannot pin a thread forever
    server_version = "Jetty(emulated)"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def do_GET(self):
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_GET

    # -- the request lifecycle ------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.cluster = self.server.cluster
        self.fault: Fault | None = None
        self._responded = False
        url = urlsplit(self.path)
        path, params = hdfs_path(url.path), parse_query(url.query)
        op = params.get("op", "").upper()
        self.cluster.log_request(self.command, self.server.role, op, path if path is not None else url.path)
        self._init_body()
        try:
            if path is None:
                self._plain(404, b"Not Found\n")
                return
            if self.cluster.latency:
                self.cluster.stopping.wait(self.cluster.latency)
            self.fault = self.cluster.faults.take(self.server.role, op, path, self.is_upload(op))
            if self.fault is not None and self._pre_op_fault(self.fault):
                return
            request = Request(self.command, op, path, params, self.authenticate(params))
            self.handle_op(request)
        except Answered:
            pass
        except RemoteError as e:
            self.send_error_json(e)
        except (ClientGone, ConnectionError, TimeoutError):
            self.hang_up()
        except Exception:  # a bug in the emulator: answer like a Java RuntimeException would
            traceback.print_exc()
            self.send_error_json(RemoteError("RuntimeException", traceback.format_exc(limit=1)))
        finally:
            if not self._body_done:
                self.close_connection = True  # leftover body bytes would be parsed as a request

    def _pre_op_fault(self, fault: Fault) -> bool:
        """Apply a fault that acts before the operation runs; True if the request is finished."""
        if fault.kind == "refuse":
            self.hang_up(abort=True)
            return True
        if fault.kind == "status":
            code = int(fault.params.get("code", 500))
            default = "RetriableException" if code == 503 else "RuntimeException"
            self.send_error_json(RemoteError(fault.params.get("exception", default),
                                             fault.params.get("message", f"Injected fault: HTTP {code}"),
                                             status=code, java_class=fault.params.get("java_class")))
            return True
        if fault.kind == "stall":
            self.cluster.stopping.wait(float(fault.params.get("seconds", 1.0)))
        return False

    def is_upload(self, op: str) -> bool:
        """Whether this request carries a CREATE/APPEND body (only DataNodes say yes)."""
        return False

    def handle_op(self, request: Request) -> None:
        raise NotImplementedError

    def authenticate(self, params: dict[str, str]) -> str:
        """The effective user: a delegation token's owner, else ``user.name`` (``doas`` honoured)."""
        token = params.get("delegation")
        if token is not None:
            user = (self.cluster.tokens or {}).get(token)
            if user is None:
                raise RemoteError("InvalidToken", f"token ({token}) can't be found in cache")
            return user
        user = params.get("user.name") or "dr.who"  # hadoop.http.staticuser.user
        doas = params.get("doas")
        if doas and doas != user:
            if not self.cluster.namespace.is_super(user):
                raise RemoteError("AuthorizationException", f"User: {user} is not allowed to impersonate {doas}")
            return doas
        return user

    # -- request bodies -------------------------------------------------------------------------

    def _init_body(self) -> None:
        self._chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            self._body_left = 0 if self._chunked else max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            self._body_left = 0
            self.close_connection = True  # no way to tell where this body ends
        self._body_done = not self._chunked and self._body_left == 0

    @property
    def declared_length(self) -> int | None:
        return None if self._chunked else self._body_left

    def read_body(self, sink, limit: int | None = None) -> int:
        """Stream the request body into ``sink`` in large blocks; returns the byte count.

        With ``limit``, stop after that many bytes (the rest stays unread). A body that ends
        early raises ClientGone.
        """
        pacer, total = Pacer(self.cluster), 0
        buf = memoryview(bytearray(BLOCK))
        if not self._chunked:
            total = self._read_exact(self._body_left, sink, pacer, buf, limit)
            self._body_done = total == self._body_left
            return total
        while limit is None or total < limit:
            size = self._chunk_size()
            if size == 0:
                self._skip_trailers()
                self._body_done = True
                break
            got = self._read_exact(size, sink, pacer, buf, None if limit is None else limit - total)
            total += got
            if got < size:
                break
            if self.rfile.readline(65537) not in (b"\r\n", b"\n"):
                raise ClientGone()
        return total

    def _read_exact(self, n: int, sink, pacer: Pacer, buf: memoryview, limit: int | None) -> int:
        want_total = n if limit is None else min(n, limit)
        done = 0
        while done < want_total:
            want = min(want_total - done, pacer.block_size(), len(buf))
            # readinto1: bytes already buffered reach the sink even if the next socket read fails
            got = self.rfile.readinto1(buf[:want])
            if not got:
                raise ClientGone()
            sink(buf[:got])
            done += got
            pacer.account(got)
        return done

    def _chunk_size(self) -> int:
        line = self.rfile.readline(65537)
        if not line:
            raise ClientGone()
        try:
            return int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ClientGone() from None  # a garbled framing: nothing sensible left to read

    def _skip_trailers(self) -> None:
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass

    # -- responses --------------------------------------------------------------------------------

    def _head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {formatdate(usegmt=True)}",
                 f"Server: {self.server_version}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
            self.close_connection = True
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(self, status: int, body: bytes = b"", content_type: str = "application/octet-stream",
                headers: list[tuple[str, str]] = ()) -> None:
        """Send a complete response in one write; a ``cut_response`` fault truncates it."""
        all_headers = [("Content-Type", content_type), *headers, ("Content-Length", str(len(body)))]
        head = self._head(status, all_headers)
        self._responded = True
        if self.fault is not None and self.fault.kind == "cut_response":
            if not body:
                self.hang_up()  # nothing to truncate: the whole answer is lost
                return
            self.wfile.write(head + body[:int(self.fault.params.get("after", len(body) // 2))])
            self.hang_up()
            return
        self.wfile.write(head + body)

    def send_json(self, status: int, obj) -> None:
        self.respond(status, dumps(obj), "application/json")

    def send_error_json(self, error: RemoteError, close: bool = False) -> None:
        if self._responded:
            self.hang_up()
            return
        headers = [("Connection", "close")] if close else []
        self.respond(error.status, error.body(), "application/json", headers)

    def send_file(self, f, count: int, headers: list[tuple[str, str]]) -> None:
        """Send ``count`` bytes of ``f`` from its position, via sendfile when not rate-limited."""
        if self.fault is not None and self.fault.kind in ("trickle", "endless"):
            self._send_file_badly(f, count, headers)
            return
        head = self._head(200, [("Content-Type", "application/octet-stream"), *headers,
                                ("Content-Length", str(count))])
        self._responded = True
        limit = count
        if self.fault is not None and self.fault.kind == "cut_response":
            limit = min(count, int(self.fault.params.get("after", count // 2)))
        self.wfile.write(head)
        pacer, offset, sent = Pacer(self.cluster), f.tell(), 0
        while sent < limit:
            n = min(limit - sent, pacer.block_size()) if self.cluster.bandwidth else limit - sent
            pacer.account(n)  # pace before sending, so the last byte leaves no earlier than allowed
            moved = self.connection.sendfile(f, offset + sent, n)
            sent += moved
            if moved < n:
                break  # the file shrank under us; the client will see a short body
        if sent < count:
            self.hang_up()

    def _send_file_badly(self, f, count: int, headers: list[tuple[str, str]]) -> None:
        """The ``trickle`` fault (``size`` bytes every ``interval`` seconds, default 1 byte every
        2 s: never idle long enough for a socket timeout) and the ``endless`` one (the file, then
        zeros without end, with no Content-Length: a body that only the client can stop)."""
        endless = self.fault.kind == "endless"
        extra = [] if endless else [("Content-Length", str(count))]
        head = self._head(200, [("Content-Type", "application/octet-stream"), *headers, *extra])
        self._responded = True
        step = int(self.fault.params.get("size", 1))
        interval = float(self.fault.params.get("interval", 2.0))
        try:
            self.wfile.write(head)
            if endless:
                self.wfile.write(f.read(count))
                zeros = bytes(1 << 20)
                while not self.cluster.stopping.is_set():
                    self.wfile.write(zeros)
            else:
                sent = 0
                while sent < count and not self.cluster.stopping.is_set():
                    piece = f.read(min(step, count - sent))
                    self.wfile.write(piece)
                    sent += len(piece)
                    if sent < count:
                        self.cluster.stopping.wait(interval)
        except OSError:
            pass  # the client gave up: what the fault is for
        self.hang_up()

    def _plain(self, status: int, body: bytes) -> None:
        self.respond(status, body, "text/plain")

    def hang_up(self, abort: bool = False) -> None:
        """Close the connection without (any more of) a response."""
        self._responded = True
        self.close_connection = True
        if abort:
            with self.server.conn_lock:
                self.server.aborted.add(self.connection)
