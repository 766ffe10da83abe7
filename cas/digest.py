"""Chunk keys: the digest of a chunk's raw (uncompressed) bytes, with the hash the store was created with.

- ``xxh3-128`` (the default): tens of GB/s, safe against accidents, **not** against someone who can
  write to the store (second preimages are easy: XXH3's secret is public). For stores written only
  by people who trust each other.
- ``blake3-256``: a cryptographic hash (~4 GB/s per core here, and it releases the GIL, so the
  chunk threads hash in parallel). For stores shared by people who do not trust each other.

A store's chunk hash is fixed when the store is created (cas.settings); see the README's threat
model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import blake3
import xxhash


@dataclass(frozen=True)
class ChunkHash:
    name: str  # as recorded in manifests and store settings
    digest_size: int  # bytes
    digest: Callable[[object], bytes]  # bytes-like -> digest
    cryptographic: bool

    def __str__(self) -> str:
        return self.name


def _blake3_256(data) -> bytes:
    return blake3.blake3(data).digest()


XXH3_128 = ChunkHash("xxh3-128", 16, xxhash.xxh3_128_digest, cryptographic=False)
BLAKE3_256 = ChunkHash("blake3-256", 32, _blake3_256, cryptographic=True)
CHUNK_HASHES = {h.name: h for h in (XXH3_128, BLAKE3_256)}
_SHORT_NAMES = {"xxh3": XXH3_128, "blake3": BLAKE3_256}
DEFAULT_CHUNK_HASH = XXH3_128

# The default hash, under the names the rest of the code has always imported.
HASH_NAME = XXH3_128.name
DIGEST_SIZE = XXH3_128.digest_size


def chunk_hash(name: str | ChunkHash) -> ChunkHash:
    """The chunk hash called ``name`` ("xxh3-128" or "blake3-256"; "xxh3" and "blake3" also work)."""
    if isinstance(name, ChunkHash):
        return name
    found = (CHUNK_HASHES.get(name) or _SHORT_NAMES.get(name)) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown chunk hash {name!r}; use one of {', '.join(CHUNK_HASHES)}")
    return found


def digest(data) -> bytes:
    """The 16-byte xxh3-128 digest of a bytes-like object (the default chunk key)."""
    return xxhash.xxh3_128_digest(data)


def source_check(data) -> bytes:
    """A fast fingerprint of bytes read from a local source, to notice that they changed between
    two reads (a put's hash pass and its upload). Not a chunk key: it guards against a file
    rewritten underneath us, not against an adversary, so a non-cryptographic hash suffices."""
    return xxhash.xxh3_128_digest(data)


def to_hex(raw_digest: bytes) -> str:
    return raw_digest.hex()
