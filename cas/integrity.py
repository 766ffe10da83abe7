"""Strong per-file digests (SHA-256 or BLAKE3): a whole-file check on top of the chunk keys.

With xxh3-128 chunk keys (fast, safe against accidents, not against someone who can write crafted
colliding chunks into the store), a strong digest over each whole file, recorded at put and checked
at get before the file is moved into place and by ``verify --full``, detects forged chunks (it
cannot stop them from being skipped by a put: blake3-256 chunk keys do that; see the README).
"""

from __future__ import annotations

import hashlib

import blake3

from .manifest import STRONG_HASHES

BLOCK = 8 << 20


def new_hasher(name: str):
    if name == "sha256":
        return hashlib.sha256()
    if name == "blake3":
        return blake3.blake3()
    raise ValueError(f"strong hash must be one of {', '.join(STRONG_HASHES)} or None, got {name!r}")


def file_digest(path: str, name: str) -> bytes:
    """The strong digest of a whole file, read in large blocks into one reused buffer."""
    hasher = new_hasher(name)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            hasher.update(view[:n])
    return hasher.digest()
