"""Hadoop RemoteExceptions: the one error type the emulated servers raise, and its JSON body.

Status codes follow the real NameNode/DataNode ``ExceptionHandler`` (webhdfs.md §1.1): a
``FileNotFoundException`` is 404, argument errors are 400, any other ``IOException`` is 403.
"""

from __future__ import annotations

import json

# Simple class name -> (fully qualified Java class name, HTTP status).
_CLASSES = {
    "FileNotFoundException": ("java.io.FileNotFoundException", 404),
    "IOException": ("java.io.IOException", 403),
    "EOFException": ("java.io.EOFException", 403),
    "AccessControlException": ("org.apache.hadoop.security.AccessControlException", 403),
    "FileAlreadyExistsException": ("org.apache.hadoop.fs.FileAlreadyExistsException", 403),
    "ParentNotDirectoryException": ("org.apache.hadoop.fs.ParentNotDirectoryException", 403),
    "PathIsNotEmptyDirectoryException": ("org.apache.hadoop.fs.PathIsNotEmptyDirectoryException", 403),
    "AlreadyBeingCreatedException": ("org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException", 403),
    "MaxDirectoryItemsExceededException": (
        "org.apache.hadoop.hdfs.protocol.FSLimitException$MaxDirectoryItemsExceededException", 403),
    "PathComponentTooLongException": (
        "org.apache.hadoop.hdfs.protocol.FSLimitException$PathComponentTooLongException", 403),
    "InvalidToken": ("org.apache.hadoop.security.token.SecretManager$InvalidToken", 403),
    "AuthorizationException": ("org.apache.hadoop.security.authorize.AuthorizationException", 403),
    "StandbyException": ("org.apache.hadoop.ipc.StandbyException", 403),
    "RetriableException": ("org.apache.hadoop.ipc.RetriableException", 403),
    "InvalidPathException": ("org.apache.hadoop.fs.InvalidPathException", 400),
    "IllegalArgumentException": ("java.lang.IllegalArgumentException", 400),
    "HadoopIllegalArgumentException": ("org.apache.hadoop.HadoopIllegalArgumentException", 400),
    "UnsupportedOperationException": ("java.lang.UnsupportedOperationException", 400),
    "RuntimeException": ("java.lang.RuntimeException", 500),
    "NullPointerException": ("java.lang.NullPointerException", 500),
}

# What a DataNode-side message looks like after the IPC layer stringified the server exception
# (webhdfs.md §1.1): the Java message followed by stack frames. Clients must match on prefixes.
_RPC_TRACE = (
    "\n\tat org.apache.hadoop.hdfs.server.namenode.FSNamesystem.startFileInt(FSNamesystem.java:2708)"
    "\n\tat org.apache.hadoop.hdfs.server.namenode.NameNodeRpcServer.create(NameNodeRpcServer.java:794)"
)


class RemoteError(Exception):
    """A Java exception as WebHDFS reports it: simple class name, message and HTTP status."""

    def __init__(self, exception: str, message: str | None, *, status: int | None = None,
                 java_class: str | None = None):
        known_class, known_status = _CLASSES.get(exception, ("org.apache.hadoop." + exception, 403))
        super().__init__(message)
        self.exception = exception
        self.message = message
        self.java_class = java_class or known_class
        self.status = status or known_status

    def via_rpc(self) -> RemoteError:
        """The same error as the DataNode's embedded DFSClient sees it: stack frames appended."""
        if self.message is not None and _RPC_TRACE not in self.message:
            self.message += _RPC_TRACE
        return self

    def body(self) -> bytes:
        """The compact, key-sorted JSON body Hadoop's JsonUtil writes."""
        return dumps({"RemoteException": {
            "exception": self.exception, "javaClassName": self.java_class, "message": self.message}})


def dumps(obj) -> bytes:
    """JSON the way Jackson over a TreeMap writes it: compact, keys sorted."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def bad_param(name: str, cause: str) -> RemoteError:
    return RemoteError("IllegalArgumentException", f'Invalid value for webhdfs parameter "{name}": {cause}')


def not_found(message: str) -> RemoteError:
    return RemoteError("FileNotFoundException", message)


def access_denied(message: str) -> RemoteError:
    return RemoteError("AccessControlException", message)
