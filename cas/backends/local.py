"""A store in a local directory: the embedded default.

Objects are plain files under the root. ``create`` writes to ``tmp/``, then hard-links the
staged file to its final name: ``link`` fails if the name exists, which gives the same
never-overwrite, exactly-one-winner semantics that RENAME gives on HDFS (``os.rename`` would
silently replace).

Durability is a barrier, not a per-object cost: ``flush`` calls syncfs(2) on the store's file
system, which makes every object created so far durable (data, inodes and directory entries)
with one journal commit. The store calls it after a put's chunks and before their manifest, and
again after the manifest. An fsync of each file and its directory instead costs two journal
commits per chunk, which on our VMs serialised a put behind the disk.

Large objects (chunks) are written with O_DIRECT where the file system allows it: a buffered
write costs about 2.7 CPU-seconds per GiB of kernel time on our ext4 VMs once writeback is
counted, O_DIRECT about 0.1, and a store's chunks are written once and rarely read back soon,
so the page cache gains nothing from holding them.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable, Iterator

from ..directio import write_direct
from ..layout import TMP, staging_key
from .base import Backend, StoredObject, check_key, closed_error

DIRECT_MIN_BYTES = 256 * 1024  # small objects (manifests, tags, leases) are not worth the copy
# Objects and directories follow the writer's umask (0644/0755 under the usual 022, 0600/0700
# under 077), as any file a user writes does. Not the source files' modes: chunks are shared by
# every version and model that holds the same bytes, so a chunk made private for one model would
# break another's reads, and one already stored readable would stay so. A store for private
# models needs a private root directory (or umask 077 for everyone who writes it).
OBJECT_MODE = 0o666


class LocalBackend(Backend):
    def __init__(self, root: str, *, durable: bool = True, direct_io: bool = True,
                 max_workers: int | None = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = "file://" + self.root
        self.durable = durable  # False: flush() does nothing (scratch stores, tests)
        self.direct_io = direct_io and hasattr(os, "O_DIRECT")  # turned off if the file system refuses it
        self.max_workers = max_workers or min(16, (os.cpu_count() or 2) * 2)
        self._tmp = os.path.join(self.root, TMP)
        self._closed = False

    def _path(self, key: str) -> str:
        # Every operation comes through here. Nothing needs releasing, but a closed store is
        # closed for every backend alike, so a caller's use-after-close shows up on local runs too.
        if self._closed:
            raise closed_error(self.url)
        # check_key refuses absolute keys and '..': a name read from a damaged store never
        # reaches outside the root.
        return os.path.join(self.root, *check_key(key).split("/")) if key else self.root

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
            self._write_staged(staged, data)
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

    def _write_staged(self, path: str, data) -> None:
        if self.direct_io and len(data) >= DIRECT_MIN_BYTES:
            try:
                self._write_direct(path, data)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: this file system has no O_DIRECT (tmpfs)
                    raise
                self.direct_io = False
                os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OBJECT_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def _write_direct(self, path: str, data) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, OBJECT_MODE)
        try:
            write_direct(fd, data, 0)
        finally:
            os.close(fd)

    def read_into(self, key: str, buffer) -> int:
        """Read the whole object into ``buffer`` (no fresh allocation); returns its length.

        BufferError, reading nothing, if the object is longer than the buffer.
        """
        fd = os.open(self._path(key), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size > len(buffer):
                raise BufferError(f"object {key!r} is {size} bytes, more than the {len(buffer)}-byte buffer")
            view, got = memoryview(buffer)[:size], 0
            while got < size:
                n = os.preadv(fd, [view[got:]], got)
                if not n:
                    break  # objects are immutable; a shorter file was cut by something outside cas
                got += n
            return got
        finally:
            os.close(fd)

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self._path(key))
            return True
        except FileNotFoundError:
            return False

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        try:
            try:
                os.link(source, target)  # a hard link: at both names for a moment, never at neither
            except FileNotFoundError:
                if not os.path.exists(source):
                    raise
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.link(source, target)
        except FileExistsError:
            pass  # the same content is there already
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, f"no object to move at {src!r} in {self.url}", src) from None
        try:
            os.unlink(source)
        except FileNotFoundError:
            pass

    def list(self, prefix: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        top = self._path(prefix)
        for dirpath, _dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in filenames:
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while we walked
                    continue
                yield StoredObject(f"{rel}/{name}", st.st_size, st.st_mtime)

    def missing(self, keys: Iterable[str]) -> set[str]:
        return {k for k in keys if not os.path.exists(self._path(k))}

    def flush(self) -> None:
        self._path("")  # refused once closed
        if self.durable and os.path.isdir(self.root):
            _syncfs(self.root)

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"


# The symbols this process is linked with (libc among them): ctypes.util.find_library would cost
# every cas command ~9 ms of imports to find the same library.
_libc = ctypes.CDLL(None, use_errno=True)


def _syncfs(path: str) -> None:
    """Flush the whole file system holding ``path`` (Linux syncfs; elsewhere sync)."""
    syncfs = getattr(_libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", path)
    finally:
        os.close(fd)
