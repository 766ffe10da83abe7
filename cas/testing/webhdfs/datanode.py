"""The DataNode endpoint: step 2 of CREATE, APPEND, OPEN and GETFILECHECKSUM."""

from __future__ import annotations

from .errors import RemoteError, bad_param
from .namespace import DEFAULT_BLOCKSIZE, DEFAULT_REPLICATION
from .params import check_valid_name, get_bool, get_int, get_permission
from .transport import Answered, ClientGone, Request, WebHdfsHandler

_OPS = {("PUT", "CREATE"), ("POST", "APPEND"), ("GET", "OPEN"), ("GET", "GETFILECHECKSUM")}
_CHUNKED_CUT = 64 * 1024  # where cut_upload stops a chunked body when no ``after`` is given


class DataNodeHandler(WebHdfsHandler):
    def is_upload(self, op: str) -> bool:
        return (self.command, op) in (("PUT", "CREATE"), ("POST", "APPEND"))

    def handle_op(self, req: Request) -> None:
        if (req.method, req.op) not in _OPS:
            raise bad_param("op", f"{req.method} {req.op} is not supported by the DataNode")
        if not req.params.get("namenoderpcaddress"):
            raise bad_param("namenoderpcaddress", "namenoderpcaddress is not specified.")
        check_valid_name(req.path)
        getattr(self, "op_" + req.op.lower())(req, self.cluster.namespace)

    def client_ip(self) -> str:
        # The NameNode sees the DataNode's embedded DFSClient as the client, i.e. this host.
        return self.server.server_address[0]

    # -- uploads ------------------------------------------------------------------------------------

    def op_create(self, req, ns):
        params = req.params
        options = dict(
            overwrite=get_bool(params, "overwrite", False),
            mode=get_permission(params, 0o644),
            replication=get_int(params, "replication", DEFAULT_REPLICATION, 1),
            blocksize=get_int(params, "blocksize", DEFAULT_BLOCKSIZE, 1),
            createparent=get_bool(params, "createparent", True),
        )
        self._continue()
        upload = self._start(lambda: ns.start_create(req.path, req.user, self.client_ip(), **options))
        self._receive(upload)
        location = f"hdfs://{self.cluster.host}:{self.cluster.namenode_port}{req.path}"
        self.respond(201, headers=[("Location", location)])

    def op_append(self, req, ns):
        get_int(req.params, "buffersize", None, 1)
        self._continue()
        upload = self._start(lambda: ns.start_append(req.path, req.user, self.client_ip()))
        self._receive(upload)
        self.respond(200)

    def _continue(self) -> None:
        """The interim ``100 Continue`` the DataNode always writes (clients skip it)."""
        if self.headers.get("Expect", "").lower() != "100-continue":  # else http.server already sent it
            try:
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass  # the client left already; what it sent is still stored (see _receive)

    def _start(self, start):
        """Open the file before reading any body byte. On failure Hadoop answers and closes the
        channel without draining the body, so a client still sending may see a reset instead."""
        try:
            return start()
        except RemoteError as e:
            self.send_error_json(e, close=True)
            raise Answered() from None

    def _receive(self, upload) -> None:
        """Copy the body into the file, then close it; a client that leaves mid-body, or a
        ``cut_upload`` fault, leaves whatever arrived (kept or rolled back per configuration)."""
        limit = None
        if self.fault is not None and self.fault.kind == "cut_upload":
            declared = self.declared_length
            limit = int(self.fault.params.get("after", _CHUNKED_CUT if declared is None else declared // 2))
        try:
            self.read_body(upload.write, limit)
        except (ClientGone, ConnectionError, TimeoutError):
            upload.abandon(keep=self.cluster.partial_uploads == "keep")
            raise
        if limit is not None:
            upload.abandon(keep=self.cluster.partial_uploads == "keep")
            self.hang_up(abort=True)
            raise Answered()
        upload.finish()

    # -- downloads ------------------------------------------------------------------------------

    def op_open(self, req, ns):
        offset = get_int(req.params, "offset", 0, 0)
        length = get_int(req.params, "length", None, 0)
        f, count = ns.open_read(req.path, req.user, offset, length)
        with f:
            self.send_file(f, count, [("Connection", "close")])  # Hadoop's onOpen closes after the body

    def op_getfilechecksum(self, req, ns):
        self.send_json(200, {"FileChecksum": ns.checksum(req.path, req.user)})
