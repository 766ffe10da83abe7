"""Chunk digests: xxh3-128 of the raw (uncompressed) bytes.

xxh3 runs at tens of GB/s, so hashing never limits throughput. It is not a cryptographic hash:
see the README's threat model, and the optional strong per-file digest.
"""

from __future__ import annotations

import xxhash

HASH_NAME = "xxh3-128"
DIGEST_SIZE = 16


def digest(data) -> bytes:
    """The 16-byte digest of a bytes-like object."""
    return xxhash.xxh3_128_digest(data)


def to_hex(raw_digest: bytes) -> str:
    return raw_digest.hex()
