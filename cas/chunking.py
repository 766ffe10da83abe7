"""Chunk boundaries: pure functions from sizes to (offset, length) pieces.

The manifest records every chunk's length, so a later chunker (content-defined, or aligned to the
members of a .keras zip or the tensors of an HDF5 file) needs no change of storage format.
"""

from __future__ import annotations

from collections.abc import Iterator

MIB = 1 << 20
DEFAULT_CHUNK_SIZE = 4 * MIB
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 256 * MIB


def check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(
            f"chunk_size must be an integer number of bytes between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}, "
            f"got {chunk_size!r}"
        )
    return chunk_size


def fixed_chunks(file_size: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) covering ``file_size`` bytes in pieces of ``chunk_size`` (last one shorter)."""
    for offset in range(0, file_size, chunk_size):
        yield offset, min(chunk_size, file_size - offset)
