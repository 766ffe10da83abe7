"""Strong per-file digests (SHA-256 or BLAKE3), for stores shared by people who do not trust each other.

Chunk keys are xxh3-128: fast and safe against accidents, not against someone who can write
crafted colliding chunks into the store. A strong digest over each whole file, recorded at put and
checked at get before the file is moved into place, closes that gap for one extra read pass.
"""

from __future__ import annotations

import hashlib

from .errors import CasError
from .manifest import STRONG_HASHES

BLOCK = 8 << 20


def new_hasher(name: str):
    if name == "sha256":
        return hashlib.sha256()
    if name == "blake3":
        try:
            import blake3
        except ImportError:
            raise CasError("strong hash 'blake3' needs the blake3 package: pip install 'cas[strong]', "
                           "or use sha256") from None
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
