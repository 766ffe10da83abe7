"""The WebHDFS test server, split by job; ``cas.testing.webhdfs_server`` is the public entry point."""

from .server import WebHdfsServer

__all__ = ["WebHdfsServer"]
