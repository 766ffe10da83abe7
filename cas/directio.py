"""O_DIRECT helpers: page-aligned per-thread buffers, and positional writes that bypass the page cache.

On our ext4 VMs a buffered write of fresh pages costs 0.2 to 1.3 sys-seconds per 512 MiB depending
on the writeback in flight; an O_DIRECT write about 0.05. cas writes chunk objects and fetched files
this way when the file system allows it (tmpfs does not: EINVAL, and then plain writes are used).

Data that already starts on a page boundary (the codec encodes and decodes into ``aligned_buffer``)
is written straight from where it lies; anything else is first copied into an aligned buffer.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import threading

ALIGN = 4096  # O_DIRECT wants buffer address, file offset and length aligned to the logical block size
HAVE_O_DIRECT = hasattr(os, "O_DIRECT")
_buffers = threading.local()


def aligned_buffer(size: int, purpose: str = "copy") -> mmap.mmap:
    """A page-aligned buffer of at least ``size`` bytes, one per thread and ``purpose``, reused.

    Callers that hold one buffer while filling another (decode into "chunk" from "object") name
    them apart, so the two never alias.
    """
    pool = getattr(_buffers, "pool", None)
    if pool is None:
        pool = _buffers.pool = {}
    buf = pool.get(purpose)
    if buf is None or len(buf) < size:
        buf = pool[purpose] = mmap.mmap(-1, max(size, ALIGN))
    return buf


def aligned(offset: int, length: int) -> bool:
    return offset % ALIGN == 0 and length % ALIGN == 0 and length > 0


def starts_aligned(data) -> bool:
    """True if ``data`` is a writable buffer whose first byte sits on a page boundary."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(data)) % ALIGN == 0
    except (TypeError, ValueError):  # read-only (bytes) or empty
        return False


def pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def write_direct(fd: int, data, offset: int) -> None:
    """Write ``data`` at the page-aligned ``offset`` of ``fd``, which was opened with O_DIRECT.

    The whole pages go straight to the device; a short tail (the end of a file or of a chunk
    object) through the page cache, after O_DIRECT is switched off on this descriptor.
    """
    view = memoryview(data).cast("B")
    body = len(view) - len(view) % ALIGN
    if body:
        if starts_aligned(view):
            pwrite_all(fd, view[:body], offset)
        else:
            buf = aligned_buffer(body)
            buf[:body] = view[:body]
            pwrite_all(fd, memoryview(buf)[:body], offset)
    if body < len(view):
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        pwrite_all(fd, view[body:], offset + body)


def write_at(path: str, data, offset: int, *, direct: bool) -> bool:
    """Write ``data`` at ``offset`` of an existing file; O_DIRECT when asked and the offset allows.

    Returns ``direct``, or False once the file system has refused O_DIRECT (the caller then stops
    asking); the bytes are written either way.
    """
    if direct and HAVE_O_DIRECT and offset % ALIGN == 0 and len(data) >= ALIGN:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            direct = False
        else:
            try:
                write_direct(fd, data, offset)
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
