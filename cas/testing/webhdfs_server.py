"""A WebHDFS server that behaves like Hadoop 3.x, for tests and benchmarks (stdlib only).

``WebHdfsServer`` runs a NameNode and N DataNodes as threaded HTTP/1.1 servers on 127.0.0.1.
Behaviour follows ``webhdfs.md`` (sourced notes on Hadoop and HdfsCLI 2.7.3).

Emulated:

* two-step CREATE/APPEND/OPEN/GETFILECHECKSUM: 307 with an absolute Location (``noredirect=true``
  gives ``200 {"Location":…}``); CREATE's step 1 checks nothing, every CREATE error comes from the
  DataNode, which answers with ``Connection: close`` without draining the body;
* DataNode details: an unsolicited ``100 Continue`` before CREATE/APPEND, 201 only after the file
  is closed, OPEN answered with ``Connection: close``, error messages of RPC-side failures
  carrying a fake ``\\n\\tat …`` stack trace (match prefixes, as against real Hadoop);
* RemoteException JSON bodies (compact, keys sorted) and Hadoop's status mapping and messages;
* Content-Length and chunked request bodies, duplicate query parameters (first wins),
  case-insensitive booleans and op names, lower-cased parameter names;
* namespace semantics: atomic CREATE overwrite=false (AlreadyBeingCreated while the winner
  uploads, FileAlreadyExists after), overwrite=true deleting even a file being written (whose
  writer then fails at close), implicit parent creation, visibility of files being written with a
  growing length, a client disconnect leaving a closed truncated file (configurable), the old
  RENAME with all its ``{"boolean":false}`` cases and move-into-directory, DELETE, MKDIRS,
  LISTSTATUS/GETFILESTATUS/GETCONTENTSUMMARY, OPEN offset/length rules, SETPERMISSION, SETOWNER,
  SETREPLICATION, SETTIMES, GETHOMEDIRECTORY, GETTRASHROOT, a deterministic GETFILECHECKSUM of
  the right shape (not Hadoop's CRC-based value);
* permissions: owner/group/other mode checks (EXECUTE on traversal, WRITE on the parent or
  nearest existing ancestor, READ to open, READ_EXECUTE to list), 644/755 defaults with no
  umask, BSD group inheritance, a superuser (and ``supergroup`` members) bypassing checks,
  ``user.name``, ``doas`` (superuser only) and ``delegation`` tokens mapped to users;
* paths through a file (403 AccessControlException, or ParentNotDirectoryException for creating
  ops), invalid names (``:``, ``.``, ``..`` → 400), 255-byte components, the directory item limit
  and the 1 MiB minimum block size (all limits are attributes of ``server.namespace``).

Not emulated: Kerberos/SPNEGO (401s), ACLs, xattrs, snapshots, symlinks, quotas, encryption and
erasure coding, storage policies, sticky-bit delete rules, trash, CONCAT/TRUNCATE and rename2
(``renameoptions``) — these answer a 400 UnsupportedOperationException rather than pretend;
lease soft/hard limits and recovery (a file is "being written" exactly while its upload request
is in progress); block-boundary visibility (length grows per 1 MiB received); HA/standby
NameNodes; DataNode liveness detection (redirects go round robin, to down DataNodes too).

Test-control API: ``raw_read``/``raw_write``/``raw_delete`` (bypassing HTTP), ``inject`` and
``clear_faults``, ``datanode_down``/``datanode_up``, ``bandwidth``/``latency`` emulation and a
``request_log``. Run ``python -m cas.testing.webhdfs_server --help`` to serve from a shell.
"""

from __future__ import annotations

import argparse

from cas.testing import wait_until_stopped
from cas.testing.webhdfs import WebHdfsServer

__all__ = ["WebHdfsServer", "main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cas.testing.webhdfs_server",
                                     description="Serve an emulated WebHDFS cluster on 127.0.0.1 until Ctrl-C.")
    parser.add_argument("--port", type=int, default=0, help="NameNode port (default: any free port)")
    parser.add_argument("--datanodes", type=int, default=1, help="number of DataNodes (default 1)")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/second per connection")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--root", default=None, help="directory holding file data (default: a temp dir)")
    parser.add_argument("--store-root", default="/cas", help="HDFS directory of the cas store (default /cas)")
    parser.add_argument("--user", default="cas", help="user owning the store root (default cas)")
    parser.add_argument("--no-permissions", action="store_true", help="disable permission checks")
    args = parser.parse_args(argv)
    server = WebHdfsServer(datanodes=args.datanodes, bandwidth=args.bandwidth, latency=args.latency,
                           data_dir=args.root, permissions=not args.no_permissions, port=args.port)
    with server:
        print(f"namenode  {server.namenode_url}", flush=True)
        print(f"store     {server.store_url(args.store_root, args.user)}", flush=True)
        wait_until_stopped()


if __name__ == "__main__":
    main()
