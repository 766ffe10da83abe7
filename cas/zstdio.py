"""zstd streamed into caller buffers, shared by the chunk codecs: bounded, no fresh output memory."""

from __future__ import annotations

import threading

import zstandard

from .errors import CorruptChunk

_local = threading.local()


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (a ZstdDecompressor is not safe to share between threads)."""
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def read_fully(reader, view: memoryview) -> int:
    """readinto until ``view`` is full or the stream ends; the bytes written."""
    filled = 0
    while filled < len(view):
        n = reader.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def decompress_into(frame, view: memoryview, what: str) -> None:
    """Stream the zstd ``frame`` into ``view``; CorruptChunk naming ``what`` unless it fills it exactly.

    The output is bounded by ``view``: a frame that would decode to more is refused after
    ``len(view) + 1`` bytes, whatever it claims.
    """
    try:
        reader = decompressor().stream_reader(frame)
        got = read_fully(reader, view)
        extra = reader.readinto(bytearray(1))
    except zstandard.ZstdError as exc:
        raise CorruptChunk(f"{what} does not decompress: {exc}") from None
    if got != len(view) or extra:
        raise CorruptChunk(f"{what} decompressed to {'more than ' if extra else ''}{got} bytes, expected {len(view)}")
