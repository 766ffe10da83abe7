"""Packs: small chunk objects written back to back into one larger object.

HDFS pays NameNode heap for every file and admins set file-count quotas, and tensor-aligned
chunking (cas.chunking ``auto``) leaves many small pieces (the metadata between tensors, small
tensors): 137 to 174 objects per 100 MB on the ResNet50 series against 26 to 29 for fixed 4 MiB
chunks (bench/README.md). So a put writes each chunk shorter than ``pack_below`` into a pack of
at most ``pack_size`` bytes instead of an object of its own.

A pack is the plain concatenation of complete chunk objects (cas.codec header and payload), so
any chunk in it is read with one ranged read and decoded and verified on its own. Its id (and
key, ``packs/ab/cd/<hex>``, cas.layout) is the store's chunk hash of the pack's bytes: creating
it is atomic, exclusive and idempotent like a chunk's. The manifest of each version says where
its packed chunks are (cas.manifest ``PackedChunk``); nothing else indexes packs.

This module is pure: it decides which chunks go in a pack and in which packs (``PackBuilder``,
``simulate``), so put and the dedup prediction (cas.dedup) make the same packs, to the byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from .codec import encoded_capacity
from .manifest import Manifest, PackedChunk

# Chunks below 1 MiB go in packs. On the ResNet50 series every piece the auto chunker cuts is
# either a 4 MiB run or (metadata gaps, small tensors) mostly far below 1 MiB: packing them cuts
# objects per 100 MB from 137-174 to 25-34 (bench/README.md "Packs"); an individual object per
# chunk of 1 MiB or more is still a large enough read to keep HDFS and S3 efficient.
DEFAULT_PACK_BELOW = 1 << 20
# restic's pack size: big enough that a store of small chunks has ~6 objects per 100 MB, small
# enough that one pack is one quick PUT/CREATE and a put holds at most one pack in memory.
DEFAULT_PACK_SIZE = 16 << 20
# The largest pack a put writes: a pack is at most pack_size unless it holds one chunk object alone,
# and a packed chunk is shorter than pack_below <= pack_size. Larger is not a pack cas wrote.
LARGEST_PACK = encoded_capacity(DEFAULT_PACK_SIZE)
# A put points at the packed chunks of the version tagged latest and of this many newest versions of
# its model (their manifests, read in parallel): a fine-tune's unchanged small tensors, and one that
# comes back a few versions later, are not stored again. Older versions and other models are not read.
REUSE_VERSIONS = 8


@dataclass(frozen=True)
class Packing:
    """How a put packs chunks: raw length below ``pack_below`` bytes goes in packs of at most
    ``pack_size`` bytes (a single chunk object larger than that still gets a pack of its own).
    ``pack_below=0`` packs nothing: one object per chunk, as cas did before packs."""

    pack_below: int = DEFAULT_PACK_BELOW
    pack_size: int = DEFAULT_PACK_SIZE

    def __post_init__(self) -> None:
        for name in ("pack_below", "pack_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number of bytes >= 0, got {value!r}")
        # at most the default: copy takes a pack larger than LARGEST_PACK for a damaged one
        if not 0 < self.pack_size <= DEFAULT_PACK_SIZE:
            raise ValueError(f"pack_size must be from 1 byte to {DEFAULT_PACK_SIZE}, got {self.pack_size!r}")
        if self.pack_below > self.pack_size:
            raise ValueError(f"pack_below ({self.pack_below} bytes) must be at most the pack size ({self.pack_size} bytes)")

    def packs(self, raw_length: int) -> bool:
        """Whether a chunk this long goes in a pack."""
        return raw_length < self.pack_below


NO_PACKS = Packing(pack_below=0)


def starts_new_pack(filled: int, stored_length: int, pack_size: int) -> bool:
    """The one packing rule (put and prediction share it): a chunk object that would make a
    non-empty pack longer than ``pack_size`` closes it and starts the next."""
    return filled > 0 and filled + stored_length > pack_size


class PackBuilder:
    """Collects chunk objects in order into packs of at most ``pack_size`` bytes.

    ``add`` returns a finished pack (its id, bytes and members) when the chunk did not fit in the
    current one; ``finish`` returns the last. ``pack_id`` hashes a pack's bytes.
    """

    def __init__(self, pack_size: int, pack_id: Callable[[bytes], bytes]) -> None:
        self.pack_size = pack_size
        self.pack_id = pack_id
        self._buffer = bytearray()
        self._members: list[tuple[bytes, int, int]] = []  # (digest, offset, stored length)

    def add(self, digest: bytes, obj) -> FinishedPack | None:
        done = None
        if starts_new_pack(len(self._buffer), len(obj), self.pack_size):
            done = self.finish()
        self._members.append((digest, len(self._buffer), len(obj)))
        self._buffer += obj
        return done

    def finish(self) -> FinishedPack | None:
        if not self._members:
            return None
        data = bytes(self._buffer)
        pid = self.pack_id(data)
        done = FinishedPack(pid, data, {d: PackedChunk(pid, off, n) for d, off, n in self._members})
        self._buffer = bytearray()
        self._members = []
        return done


@dataclass(frozen=True)
class FinishedPack:
    id: bytes
    data: bytes
    members: dict[bytes, PackedChunk]


def reusable_locations(tables: Iterable[Mapping[bytes, PackedChunk]]) -> dict[bytes, PackedChunk]:
    """Packed chunks a put may point at instead of storing them again (once checked and their packs
    confirmed present): those in the pack tables of the versions it reads for reuse, first first."""
    out: dict[bytes, PackedChunk] = {}
    for table in tables:
        for d, at in table.items():
            out.setdefault(d, at)
    return out


def simulate(versions: Sequence[Manifest], stored_size: Callable[[bytes, int], int], packing: Packing,
             pack_id: Callable[[int, int], bytes], window: int) -> tuple[list[Manifest], dict[bytes, int]]:
    """The manifests (with their pack tables) and pack sizes a series of puts into an empty store
    would write, each put reusing the packs of the ``window`` versions before it (as a put reuses
    those of ``latest`` and of the newest versions, cas.store.REUSE_VERSIONS).

    Mirrors put: a small chunk is reused if an individual object holds it (never, in a store
    that always packed) or one of those versions packed it; any other small chunk new to this
    version goes in this version's packs, in order of first appearance, by ``starts_new_pack``.
    ``stored_size(digest, raw_length)`` is a chunk object's size; ``pack_id(version index, pack
    index)`` names the simulated packs. Returns (manifests, {pack id: bytes}).
    """
    sizes: dict[bytes, int] = {}
    individual: set[bytes] = set()  # digests stored as objects of their own
    done: list[Manifest] = []
    for vi, m in enumerate(versions):
        previous = reusable_locations(m.packed for m in reversed(done[-window:])) if window else {}
        placed: dict[bytes, PackedChunk] = {}
        current, filled, count = b"", 0, 0
        for d, length in m.chunk_lengths().items():
            if not packing.packs(length):
                individual.add(d)
                continue
            if d in individual:
                continue
            if d in previous:
                placed[d] = previous[d]
                continue
            n = stored_size(d, length)
            if not current or starts_new_pack(filled, n, packing.pack_size):
                current, filled = pack_id(vi, count), 0
                count += 1
            placed[d] = PackedChunk(current, filled, n)
            filled += n
            sizes[current] = filled
        done.append(replace(m, packed=placed))
    return done, sizes
