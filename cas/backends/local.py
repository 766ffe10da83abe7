"""A store in a local directory: the embedded default.

Objects are plain files under the root. ``create`` writes to ``tmp/``, fsyncs, then hard-links
the staged file to its final name: ``link`` fails if the name exists, which gives the same
never-overwrite, exactly-one-winner semantics that RENAME gives on HDFS (``os.rename`` would
silently replace).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator

from ..layout import TMP, staging_key


class LocalBackend:
    def __init__(self, root: str, *, fsync: bool = True, max_workers: int | None = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = "file://" + self.root
        self.fsync = fsync
        self.max_workers = max_workers or min(16, (os.cpu_count() or 2) * 2)
        self._tmp = os.path.join(self.root, TMP)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(self._path(key), "rb") as f:
            if offset:
                f.seek(offset)
            return f.read() if length is None else f.read(length)

    def create(self, key: str, data: bytes) -> None:
        final = self._path(key)
        os.makedirs(self._tmp, exist_ok=True)
        staged = self._path(staging_key())
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(staged, final)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.link(staged, final)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "object already exists", key) from None
        finally:
            try:
                os.unlink(staged)
            except FileNotFoundError:
                pass

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self._path(key))
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(self, prefix: str) -> Iterator[tuple[str, int]]:
        top = self._path(prefix)
        for dirpath, _dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in filenames:
                try:
                    size = os.stat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:  # deleted while we walked
                    continue
                yield f"{rel}/{name}", size

    def missing(self, keys: Iterable[str]) -> set[str]:
        return {k for k in keys if not os.path.exists(self._path(k))}

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"
