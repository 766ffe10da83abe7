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

from .backends.base import read_limited
from .digest import CHUNK_HASHES, DEFAULT_CHUNK_HASH
from .errors import BadSettings, SettingsConflict
from .layout import CHUNKS, MANIFESTS, SETTINGS
from .leases import gc_lease

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


# -- reading and creating a store's settings (the only I/O here) ----------------------------------

def read(backend) -> StoreSettings | None:
    """The settings of the store ``backend`` points at, or None if it has none (an xxh3-128 store)."""
    try:
        data = read_limited(backend, SETTINGS, MAX_SETTINGS_BYTES, "the store settings")
    except FileNotFoundError:
        return None
    return unpack(data, name=f"settings of store {backend.url} ({SETTINGS})")


def is_empty(backend) -> bool:
    """No versions (removed ones included) and no chunks: nothing is keyed by any hash yet."""
    return not backend.list(MANIFESTS) and not backend.list(CHUNKS)


def create(backend, chunk_hash: str, *, ttl: float) -> tuple[StoreSettings, bool]:
    """Write the store's settings once; returns (the store's settings, whether this call wrote them).

    Runs under the gc lease: no writer holds a lease meanwhile, so none can store chunks or publish
    a version keyed by another hash between the emptiness check and the exclusive create. A store
    that holds chunks or versions but no settings is an xxh3-128 store and stays one.
    """
    with gc_lease(backend, ttl=ttl):
        found = read(backend)
        if found is not None:
            return found, False
        if not is_empty(backend):
            if chunk_hash == LEGACY.chunk_hash:
                return LEGACY, False
            raise SettingsConflict(
                f"store {backend.url} already holds chunks or versions keyed by {LEGACY.chunk_hash}; a store's chunk "
                f"hash is fixed when it is created: create a new store for {chunk_hash} keys and put the versions there")
        try:
            backend.create(SETTINGS, pack(StoreSettings(chunk_hash=chunk_hash)))
            backend.flush()
        except FileExistsError:  # another client created the store meanwhile (an older cas, without the lease)
            return read(backend), False
        return read(backend), True
