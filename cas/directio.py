"""O_DIRECT helpers: page-aligned per-thread buffers, and a positional write that bypasses the page cache.

On our ext4 VMs a buffered write of fresh pages costs 0.2 to 1.3 sys-seconds per 512 MiB depending
on the writeback in flight; an O_DIRECT write about 0.05. cas writes chunk objects and fetched files
this way when the file system allows it (tmpfs does not: EINVAL, and then plain writes are used).
"""

from __future__ import annotations

import errno
import mmap
import os
import threading

ALIGN = 4096  # O_DIRECT wants buffer address, file offset and length aligned to the logical block size
HAVE_O_DIRECT = hasattr(os, "O_DIRECT")
_buffers = threading.local()


def aligned_buffer(size: int) -> mmap.mmap:
    """A page-aligned buffer of at least ``size`` bytes, one per thread and reused."""
    buf = getattr(_buffers, "buf", None)
    if buf is None or len(buf) < size:
        buf = _buffers.buf = mmap.mmap(-1, max(size, ALIGN))
    return buf


def aligned(offset: int, length: int) -> bool:
    return offset % ALIGN == 0 and length % ALIGN == 0 and length > 0


def pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def write_at(path: str, data, offset: int, *, direct: bool) -> bool:
    """Write ``data`` at ``offset`` of an existing file; O_DIRECT when asked and aligned.

    Returns ``direct``, or False once the file system has refused O_DIRECT (the caller then stops
    asking); the bytes are written either way. Unaligned pieces (a file's short last chunk) are
    written through the page cache.
    """
    if direct and HAVE_O_DIRECT and aligned(offset, len(data)):
        buf = aligned_buffer(len(data))
        buf[: len(data)] = data
        try:
            fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            direct = False
        else:
            try:
                pwrite_all(fd, memoryview(buf)[: len(data)], offset)
                return True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                direct = False
            finally:
                os.close(fd)
    fd = os.open(path, os.O_WRONLY)
    try:
        pwrite_all(fd, data, offset)
    finally:
        os.close(fd)
    return direct
