"""Store settings: what every client of a store must agree on, in one small object.

The object (``layout.SETTINGS``) is written once, exclusively, when the store is created
(``Store.create``, ``cas init``) and never changed; every client reads it before it writes. A
store without it was made before settings existed, or by a client that asked for nothing: its
chunk keys are xxh3-128 (``LEGACY``).

Like a manifest, ``unpack`` trusts nothing: a truncated, non-msgpack, unknown-format or
unknown-setting object raises BadSettings. An unknown setting means a newer cas wrote it, and
writing with a cas that ignores it could break the store, so it is refused, not skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgpack

from .digest import CHUNK_HASHES, DEFAULT_CHUNK_HASH
from .errors import BadSettings

FORMAT = 1
MAX_SETTINGS_BYTES = 64 << 10
_FIELDS = {"format", "chunk_hash", "created"}


@dataclass(frozen=True)
class StoreSettings:
    chunk_hash: str = DEFAULT_CHUNK_HASH.name  # a name in cas.digest.CHUNK_HASHES
    created: float = field(default_factory=time.time)


LEGACY = StoreSettings(chunk_hash=DEFAULT_CHUNK_HASH.name, created=0.0)  # a store without a settings object


def pack(s: StoreSettings) -> bytes:
    return msgpack.packb({"format": FORMAT, "chunk_hash": s.chunk_hash, "created": s.created}, use_bin_type=True)


def unpack(data: bytes, *, name: str = "store settings") -> StoreSettings:
    """Parse and validate a settings object; BadSettings names ``name`` and the problem."""
    if len(data) > MAX_SETTINGS_BYTES:
        raise BadSettings(f"{name} is {len(data)} bytes, over the {MAX_SETTINGS_BYTES}-byte limit; the store is damaged")
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise BadSettings(f"{name} is not valid msgpack ({type(exc).__name__}); the store is damaged") from None
    if not isinstance(doc, dict):
        raise BadSettings(f"{name} is not a msgpack map; the store is damaged")
    if doc.get("format") != FORMAT:
        raise BadSettings(f"{name} has format {doc.get('format')!r}; this cas reads format {FORMAT} (upgrade cas)")
    unknown = sorted(str(k) for k in set(doc) - _FIELDS)
    if unknown:
        raise BadSettings(f"{name} has settings this cas does not know ({', '.join(unknown)}); upgrade cas")
    if doc.get("chunk_hash") not in CHUNK_HASHES:
        raise BadSettings(f"{name} names chunk hash {doc.get('chunk_hash')!r}; this cas knows "
                          f"{', '.join(CHUNK_HASHES)} (upgrade cas)")
    created = doc.get("created")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        raise BadSettings(f"{name} is malformed: created is not a number")
    return StoreSettings(chunk_hash=doc["chunk_hash"], created=float(created))
