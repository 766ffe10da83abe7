"""``WebHdfsServer``: one NameNode and N DataNodes on loopback, plus the test-control API."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import weakref
from urllib.parse import quote

from .datanode import DataNodeHandler
from .faults import Fault, Faults
from .namenode import NameNodeHandler
from .namespace import Namespace
from .transport import Node

_PARTIAL_POLICIES = ("keep", "delete")


class WebHdfsServer:
    """An emulated HDFS cluster speaking WebHDFS over real HTTP on 127.0.0.1.

    ``bandwidth`` (bytes/s per connection, None = unlimited), ``latency`` (seconds added once per
    request) and ``partial_uploads`` (``"keep"``: a body cut short becomes a closed, truncated
    file, as Hadoop does; ``"delete"``: it is rolled back) may be changed at any time.
    ``tokens`` maps delegation tokens to user names; ``groups`` maps users to their groups
    (default: a group named after the user; members of ``supergroup`` are superusers).
    """

    def __init__(self, *, datanodes: int = 1, bandwidth: float | None = None, latency: float = 0.0,
                 data_dir: str | None = None, permissions: bool = True, superuser: str = "hdfs",
                 tokens: dict[str, str] | None = None, groups: dict[str, list[str]] | None = None,
                 partial_uploads: str = "keep", port: int = 0):
        if datanodes < 1:
            raise ValueError("a cluster needs at least one datanode")
        if partial_uploads not in _PARTIAL_POLICIES:
            raise ValueError(f"partial_uploads must be one of {_PARTIAL_POLICIES}")
        self.host = "127.0.0.1"
        self.bandwidth = bandwidth
        self.latency = latency
        self.partial_uploads = partial_uploads
        self.tokens = dict(tokens or {})
        self.request_log: list[tuple[str, str, str, str]] = []
        self.faults = Faults()
        self.stopping = threading.Event()
        self._owns_dir = data_dir is None
        self.data_dir = tempfile.mkdtemp(prefix="webhdfs-") if data_dir is None else data_dir
        os.makedirs(self.data_dir, exist_ok=True)
        if self._owns_dir:
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.data_dir, True)
        self.namespace = Namespace(self.data_dir, superuser=superuser, permissions=permissions, groups=groups)
        self.namenode = Node(self, "namenode", NameNodeHandler, self.host, port)
        self.datanodes = [Node(self, "datanode", DataNodeHandler, self.host) for _ in range(datanodes)]
        self._next_datanode = itertools.count()
        self._pick_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> WebHdfsServer:
        self.stopping.clear()
        for node in [self.namenode, *self.datanodes]:
            node.start()
        return self

    def stop(self) -> None:
        """Stop every node, drop open connections, and delete the data directory if it is ours."""
        self.stopping.set()  # wakes requests sleeping for latency, stall or bandwidth
        for node in [self.namenode, *self.datanodes]:
            node.stop()
        if self._owns_dir:
            self._cleanup()

    def __enter__(self) -> WebHdfsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def namenode_port(self) -> int:
        return self.namenode.port

    @property
    def namenode_url(self) -> str:
        return self.namenode.url

    @property
    def datanode_urls(self) -> list[str]:
        return [node.url for node in self.datanodes]

    def store_url(self, root: str = "/cas", user: str = "cas") -> str:
        """The cas store URL for ``root``, which is created (as an admin would) owned by ``user``."""
        root = "/" + root.strip("/")
        if self.namespace.raw_status(root) is None:
            self.namespace.raw_mkdirs(root, owner=user)
        return f"webhdfs://{self.host}:{self.namenode_port}{quote(root)}?user={quote(user)}"

    def pick_datanode(self) -> Node:
        """Round robin over all DataNodes, down ones included: a real NameNode takes minutes to
        notice a dead DataNode, so clients do get redirected to one."""
        with self._pick_lock:
            return self.datanodes[next(self._next_datanode) % len(self.datanodes)]

    # -- raw storage access (no HTTP, no permission checks) -------------------------------------

    def raw_read(self, path: str) -> bytes | None:
        """The bytes of the file at ``path`` (visible bytes if still being written), else None."""
        return self.namespace.raw_read(path)

    def raw_write(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path`` as a closed file; owner is the nearest existing ancestor's."""
        self.namespace.raw_write(path, bytes(data))

    def raw_delete(self, path: str) -> bool:
        """Remove a file or a whole directory tree; False if nothing was there."""
        return self.namespace.raw_delete(path)

    def raw_mkdirs(self, path: str, owner: str | None = None, group: str | None = None, mode: int = 0o755) -> None:
        self.namespace.raw_mkdirs(path, owner, group, mode)

    def raw_status(self, path: str) -> dict | None:
        """The FileStatus JSON object GETFILESTATUS would return, or None."""
        return self.namespace.raw_status(path)

    # -- faults and outages ---------------------------------------------------------------------

    def inject(self, kind: str, *, op: str | None = None, path_prefix: str | None = None,
               node: str | None = None, times: int | None = 1, skip: int = 0, **params) -> Fault:
        """Arm a fault for the next ``times`` requests matching ``op``/``path_prefix``/``node``.

        Kinds and params: ``refuse`` (reset the connection, no response); ``status`` (``code``=500,
        ``exception``, ``message``, ``java_class``); ``cut_response`` (``after`` body bytes, default
        half; an empty-bodied answer is dropped whole, after the op ran); ``cut_upload`` (``after``
        body bytes, default half, or 64 KiB of a chunked body); ``stall`` (``seconds``=1.0, then
        answer normally); ``trickle`` (an OPEN body sent ``size``=1 bytes every ``interval``=2.0 s);
        ``endless`` (an OPEN body that never ends: the file, then zeros, no Content-Length). ``refuse``/``status``/``stall`` act before the op runs.
        ``times=None`` keeps firing until ``clear_faults()``; ``skip=K`` lets the first K matching
        requests through, so a fault can land in the middle of an operation. Returns the fault;
        ``.hits`` counts.
        """
        return self.faults.add(kind, op=op, path_prefix=path_prefix, node=node, times=times, params=params,
                               skip=skip)

    def clear_faults(self) -> None:
        self.faults.clear()

    def datanode_down(self, i: int = 0) -> None:
        """Close DataNode ``i``'s port (connection refused) and cut its open connections."""
        self.datanodes[i].stop()

    def datanode_up(self, i: int = 0) -> None:
        """Reopen DataNode ``i`` on the same port."""
        if not self.datanodes[i].up:
            self.datanodes[i].start()

    # -- request log ----------------------------------------------------------------------------

    def log_request(self, method: str, node: str, op: str, path: str) -> None:
        self.request_log.append((method, node, op, path))  # list.append is atomic

    def reset_log(self) -> None:
        self.request_log.clear()
