"""Backends and the one place that turns a store URL into one."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from ..errors import BadName
from .base import Backend
from .local import LocalBackend
from .memory import MemoryBackend

__all__ = ["Backend", "LocalBackend", "MemoryBackend", "open_backend"]

_MEMORY_STORES: dict[str, MemoryBackend] = {}


def open_backend(url: str, **options) -> Backend:
    """Open the backend a store URL names.

    - a path, or ``file:///abs/path``: a local directory (created on first write);
    - ``memory://NAME``: an in-process store whose objects every open of the same NAME shares;
    - ``webhdfs://namenode:port/root?user=NAME`` (and ``swebhdfs://`` for HTTPS): HDFS;
    - ``s3://BUCKET/PREFIX?endpoint=URL&region=R``: S3-compatible object storage (boto3).

    Unknown schemes and unknown options are rejected, naming them.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"store URL must be a non-empty string, got {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = unquote(parts.path) if scheme == "file" else url
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL {url!r} names host {parts.netloc!r}; use file:///absolute/path")
        return LocalBackend(path, **options)
    if scheme == "memory":
        if options:
            raise TypeError(f"memory:// stores take no options, got {sorted(options)}")
        name = parts.netloc + parts.path
        # a handle of its own on the shared objects: closing it closes only this handle
        return MemoryBackend(name, shares=_MEMORY_STORES.setdefault(name, MemoryBackend(name)))
    if scheme in ("webhdfs", "swebhdfs"):
        from .webhdfs import open_webhdfs

        return open_webhdfs(url, **options)
    if scheme == "s3":
        from .s3 import open_s3

        return open_s3(url, **options)
    raise BadName(f"unknown store URL scheme {parts.scheme!r} in {url!r}; use a path, file://, memory://, webhdfs:// or s3://")
