"""Version manifests: plain values, packed to and checked from msgpack with no I/O.

A manifest lists every file of one model version with its size, mode and ordered chunks
(digest and length), and where each chunk that lives inside a pack object is (pack id, offset,
stored length): ``locate`` is the one answer to "where does chunk D of this version live".
``unpack`` trusts nothing: a truncated, non-msgpack, unknown-format or
hostile manifest (a path that escapes the destination, sizes that do not add up, absurd counts)
raises BadManifest before anything is written anywhere.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import msgpack

from .chunking import MAX_CHUNK_SIZE
from .codec import HEADER_SIZE, encoded_capacity
from .digest import CHUNK_HASHES, HASH_NAME
from .errors import BadManifest, NewerFormat
from .layout import chunk_key, pack_key
from .names import is_valid_name

FORMAT = 1  # a version whose chunks are all individual objects: what cas wrote before packs
FORMAT_PACKS = 2  # a version with chunks inside pack objects: a cas that reads only 1 refuses it by name
FORMATS = (FORMAT, FORMAT_PACKS)
# The largest pack object the format allows (cas writes packs of at most cas.packing.DEFAULT_PACK_SIZE):
# a packed chunk's offset + stored length must lie below it, whatever a hostile manifest claims.
MAX_PACK_BYTES = 256 << 20
KIND_FILE = "file"
KIND_DIR = "dir"
# Format limits, chosen so that reading any manifest, however hostile, stays far below 300 MiB of
# memory, while still allowing a 1 TiB model at 1 MiB chunks (what save_model uses) or 4 TiB at
# the default 4 MiB. A legitimate manifest costs ~21 bytes per chunk packed (22 MiB at the chunk
# limit) and ~100-150 bytes per chunk once unpacked; a get holds a few hundred more per chunk.
MAX_MANIFEST_BYTES = 64 << 20
MAX_CHUNKS = 1 << 20  # per version, all files together
MAX_FILES = 1_000_000
MAX_PATH_LENGTH = 4096
MAX_STRING_BYTES = 1 << 20  # any one string in a manifest (paths are far shorter; metadata values)
MAX_DIGEST_SIZE = max(h.digest_size for h in CHUNK_HASHES.values())
STRONG_HASHES = ("sha256", "blake3")  # both 32-byte digests
# The manifest's own checksum: its map's last entry, "check", holds the 16-byte BLAKE2b of every
# byte before that entry. It catches damage that still parses (a flipped bit in a path, a mode, a
# date), which nothing else would: chunk keys guard the content, not the names around it.
# Manifests written before it have none and read as before; readers older than it ignore the key.
CHECK_KEY = "check"
CHECK_SIZE = 16
_CHECK_ENTRY = msgpack.packb(CHECK_KEY) + msgpack.packb(bytes(CHECK_SIZE), use_bin_type=True)[:-CHECK_SIZE]


@dataclass(frozen=True)
class FileEntry:
    """One file of a version. ``path`` is relative, '/'-separated; for a single-file model it is
    the file's own name (kept so loaders can tell ``.keras`` from ``.h5``)."""

    path: str
    size: int
    mode: int
    digests: tuple[bytes, ...]
    lengths: tuple[int, ...]
    strong: bytes | None = None  # whole-file digest with the manifest's strong_hash, if one was asked for
    # How the file was cut: {"name": "fixed"|"auto"|"cdc", parameters...} (cas.planning). None in
    # manifests written before chunkers were recorded: those files were cut fixed at chunk_size.
    chunker: dict | None = field(default=None, hash=False)

    def chunks(self) -> Iterator[tuple[int, int, bytes]]:
        """Yield (offset, length, digest) for each chunk, in file order."""
        offset = 0
        for digest, length in zip(self.digests, self.lengths):
            yield offset, length, digest
            offset += length


@dataclass(frozen=True, slots=True)  # slots: a version may pack a million chunks
class PackedChunk:
    """Where one chunk's object sits inside a pack: a complete chunk object (header and payload)
    ``length`` bytes long at ``offset`` of the pack ``pack`` (its id, the hash of its bytes)."""

    pack: bytes
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    """Where a reader finds chunk ``digest``: ``length`` bytes at ``offset`` of object ``key`` (the
    whole object when ``length`` is None). A packed chunk may also have been stored (or repaired)
    as its own object: ``individual_key``, the fallback when the pack is missing or damaged."""

    key: str
    digest: bytes
    offset: int = 0
    length: int | None = None

    @property
    def in_pack(self) -> bool:
        return self.length is not None

    @property
    def individual_key(self) -> str:
        return chunk_key(self.digest.hex())


def locate(manifest: Manifest, digest: bytes) -> ChunkLocation:
    """Where chunk ``digest`` of ``manifest`` lives: the one place that answers it (get, verify,
    repair, copy and stats all ask here). No global index: the manifest says it all."""
    return location(digest, manifest.packed.get(digest))


def location(digest: bytes, at: PackedChunk | None) -> ChunkLocation:
    """``locate`` for a chunk whose pack-table entry (or None) the caller already holds."""
    if at is None:
        return ChunkLocation(chunk_key(digest.hex()), digest)
    return ChunkLocation(_pack_key(at.pack), digest, at.offset, at.length)


@lru_cache(maxsize=4096)
def _pack_key(pack_id: bytes) -> str:
    """One key string per pack, shared by the locations of its chunks (a version may pack a million)."""
    return pack_key(pack_id.hex())


@dataclass(frozen=True)
class Manifest:
    model: str
    version: str
    kind: str
    chunk_size: int  # the longest piece the put's chunker cuts (for cdc: its maximum, 4 x the average)
    level: int
    files: tuple[FileEntry, ...]
    dirs: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    hash: str = HASH_NAME  # the chunk hash (cas.digest.CHUNK_HASHES), the store's setting
    codec: str = "zstd"
    strong_hash: str | None = None  # "sha256" or "blake3" when files carry a strong digest
    # digest -> where it sits in a pack, for the chunks of this version that live in packs; the
    # others are individual ``chunks/`` objects. Non-empty makes the manifest format 2.
    packed: dict[bytes, PackedChunk] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Logical bytes: the sum of the file sizes."""
        return sum(f.size for f in self.files)

    def chunk_lengths(self) -> dict[bytes, int]:
        """Every distinct chunk digest of this version, with its raw length."""
        out: dict[bytes, int] = {}
        for f in self.files:
            out.update(zip(f.digests, f.lengths))
        return out

    def location(self, digest: bytes) -> ChunkLocation:
        return locate(self, digest)

    def pack_ids(self) -> set[bytes]:
        """The ids of every pack this version reads from."""
        return {at.pack for at in self.packed.values()}


def pack(m: Manifest) -> bytes:
    doc = {
        "format": FORMAT_PACKS if m.packed else FORMAT,
        "model": m.model,
        "version": m.version,
        "created": m.created,
        "kind": m.kind,
        "chunk_size": m.chunk_size,
        "hash": m.hash,
        "codec": m.codec,
        "level": m.level,
        "metadata": m.metadata,
        "dirs": list(m.dirs),
        "files": [_pack_file(f) for f in m.files],
    }
    if m.strong_hash:
        doc["strong_hash"] = m.strong_hash
    if m.packed:
        doc["packs"] = _pack_locations(m.packed)
    doc[CHECK_KEY] = bytes(CHECK_SIZE)  # last: filled in below, once the bytes before it are known
    data = msgpack.packb(doc, use_bin_type=True)
    return data[:-CHECK_SIZE] + _checksum(data[:-len(_CHECK_ENTRY) - CHECK_SIZE])


def _checksum(body) -> bytes:
    return hashlib.blake2b(body, digest_size=CHECK_SIZE).digest()


def _pack_locations(packed: dict[bytes, PackedChunk]) -> dict:
    """Columns, not a map per chunk: ~11 bytes per packed chunk beyond its digest."""
    ids: dict[bytes, int] = {}
    for at in packed.values():
        ids.setdefault(at.pack, len(ids))
    return {"ids": b"".join(ids), "chunks": b"".join(packed), "pack": [ids[at.pack] for at in packed.values()],
            "offset": [at.offset for at in packed.values()], "length": [at.length for at in packed.values()]}


def _pack_file(f: FileEntry) -> dict:
    out = {"path": f.path, "size": f.size, "mode": f.mode, "digests": b"".join(f.digests), "lengths": list(f.lengths)}
    if f.strong is not None:
        out["strong"] = f.strong
    if f.chunker is not None:
        out["chunker"] = f.chunker
    return out


def unpack(data: bytes, *, name: str = "manifest") -> Manifest:
    """Parse and fully validate a packed manifest; BadManifest names ``name`` and the problem."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadManifest(f"{name} is {len(data)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        # The limits make msgpack refuse an array, string or binary that claims more than the
        # format allows from its header, before allocating it.
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_CHUNKS * MAX_DIGEST_SIZE,
                              max_str_len=MAX_STRING_BYTES, max_array_len=max(MAX_CHUNKS, MAX_FILES))
    except ValueError as exc:
        if "exceeds max" in str(exc):
            raise BadManifest(f"{name} holds an array, string or binary larger than the format allows ({exc}); "
                              "it is corrupt or hostile") from None
        raise BadManifest(f"{name} is not valid msgpack (ValueError); it is truncated or corrupt") from None
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise BadManifest(f"{name} is not valid msgpack ({type(exc).__name__}); it is truncated or corrupt") from None
    if not isinstance(doc, dict):
        raise BadManifest(f"{name} is not a msgpack map")
    fmt = doc.get("format")
    if fmt not in FORMATS:
        raise NewerFormat(f"{name} has format {fmt!r}; this cas reads formats {FORMAT} and {FORMAT_PACKS} (upgrade cas?)")
    if (fmt == FORMAT_PACKS) != ("packs" in doc):
        raise BadManifest(f"{name} is malformed: format {fmt} " + ("lists packs" if fmt == FORMAT else "lists no packs"))
    if CHECK_KEY in doc:
        entry = len(_CHECK_ENTRY) + CHECK_SIZE
        if not (isinstance(doc[CHECK_KEY], bytes) and data[-entry:-CHECK_SIZE] == _CHECK_ENTRY
                and data[-CHECK_SIZE:] == doc[CHECK_KEY]):
            raise BadManifest(f"{name} is malformed: its checksum is not a {CHECK_SIZE}-byte last entry")
        if _checksum(memoryview(data)[:-entry]) != doc[CHECK_KEY]:
            raise BadManifest(f"{name} does not match its checksum: it was damaged after it was written; "
                              "restore it from another copy of the store, or remove the version")
    try:
        return _from_doc(doc, name)
    except BadManifest:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadManifest(f"{name} is malformed: {type(exc).__name__}: {exc}") from None


def _require(cond: bool, name: str, what: str) -> None:
    if not cond:
        raise BadManifest(f"{name} is malformed: {what}")


def _from_doc(doc: dict, name: str) -> Manifest:
    _require(doc.get("hash") in CHUNK_HASHES, name, f"unknown hash {doc.get('hash')!r}")
    digest_size = CHUNK_HASHES[doc["hash"]].digest_size
    kind = doc["kind"]
    _require(kind in (KIND_FILE, KIND_DIR), name, f"unknown kind {kind!r}")
    for key in ("model", "version", "codec"):
        _require(isinstance(doc[key], str), name, f"{key} is not a string")
    for key in ("model", "version"):  # used as path components (cache, checkouts): as strict as a user's names
        _require(is_valid_name(doc[key]), name, f"{key} {doc[key][:80]!r} is not a valid {key} name")
    for key in ("chunk_size", "level"):
        _require(type(doc[key]) is int and doc[key] > 0, name, f"{key} is not a positive integer")
    _require(isinstance(doc["created"], (int, float)), name, "created is not a number")
    metadata = doc.get("metadata", {})
    _require(isinstance(metadata, dict), name, "metadata is not a map")
    raw_files = doc["files"]
    _require(isinstance(raw_files, list) and len(raw_files) <= MAX_FILES, name, "files is not a list of at most a million")
    _require(kind == KIND_DIR or len(raw_files) == 1, name, "a single-file version must list exactly one file")
    strong_hash = doc.get("strong_hash")
    _require(strong_hash in (None,) + STRONG_HASHES, name, f"unknown strong hash {strong_hash!r}")
    # Count before building anything per chunk: a manifest listing millions of tiny chunks is refused
    # for the cost of this sum, not after building millions of digest objects.
    n_chunks = sum(len(f["lengths"]) for f in raw_files if isinstance(f, dict) and isinstance(f.get("lengths"), list))
    _require(n_chunks <= MAX_CHUNKS, name, f"it lists {n_chunks} chunks; the format allows at most {MAX_CHUNKS} per version")
    files = tuple(_file_entry(f, name, strong_hash, digest_size) for f in raw_files)
    dirs = tuple(safe_relative_path(d, name) for d in doc.get("dirs", []))
    _check_tree(files, dirs, name)
    packed = _packed_from_doc(doc["packs"], files, name, digest_size) if "packs" in doc else {}
    return Manifest(
        model=doc["model"],
        version=doc["version"],
        kind=kind,
        chunk_size=doc["chunk_size"],
        level=doc["level"],
        files=files,
        dirs=dirs,
        metadata=metadata,
        created=float(doc["created"]),
        hash=doc["hash"],
        codec=doc["codec"],
        strong_hash=strong_hash,
        packed=packed,
    )


def _packed_from_doc(raw: object, files: tuple[FileEntry, ...], name: str, digest_size: int) -> dict[bytes, PackedChunk]:
    """Validate the pack table: every entry names a chunk of this version once, a listed pack, and
    a range inside the format's largest pack that is no longer than any encoding of the chunk (so
    a reader never reads or allocates more for it than for an individual chunk object)."""
    _require(isinstance(raw, dict), name, "packs is not a map")
    ids_blob, blob = raw["ids"], raw["chunks"]
    where, offsets, stored = raw["pack"], raw["offset"], raw["length"]
    _require(isinstance(ids_blob, bytes) and ids_blob and len(ids_blob) % digest_size == 0, name, "packs has a bad id list")
    _require(isinstance(blob, bytes) and blob and len(blob) % digest_size == 0, name, "packs has a bad chunk list")
    n = len(blob) // digest_size
    _require(all(isinstance(col, list) and len(col) == n for col in (where, offsets, stored)), name,
             f"packs lists {n} chunks but not as many packs, offsets and lengths")
    n_ids = len(ids_blob) // digest_size
    ids = [ids_blob[i:i + digest_size] for i in range(0, len(ids_blob), digest_size)]
    rows: dict[bytes, int] = {}  # packed digest -> its row; emptied as the files' chunks claim them
    for i in range(n):
        d = blob[i * digest_size:(i + 1) * digest_size]
        _require(d not in rows, name, f"packs places chunk {d.hex()} twice")
        rows[d] = i
    packed: dict[bytes, PackedChunk] = {}
    used = set()
    for f in files:
        for d, length in zip(f.digests, f.lengths):
            i = rows.pop(d, None)
            if i is None:
                continue  # not packed, or placed already (a chunk used twice)
            p, off, size = where[i], offsets[i], stored[i]
            _require(type(p) is int and 0 <= p < n_ids, name,
                     f"packs places chunk {d.hex()} in pack #{p!r}, which it does not list")
            _require(type(size) is int and HEADER_SIZE < size <= encoded_capacity(length), name,
                     f"packs gives chunk {d.hex()} a stored length of {size!r}, impossible for a {length}-byte chunk")
            _require(type(off) is int and 0 <= off and off + size <= MAX_PACK_BYTES, name,
                     f"packs places chunk {d.hex()} at offset {off!r}, outside the largest pack the format allows "
                     f"({MAX_PACK_BYTES} bytes)")
            packed[d] = PackedChunk(ids[p], off, size)  # keyed by the file's digest object: no second copy
            used.add(p)
    for d in rows:
        raise BadManifest(f"{name} is malformed: packs places chunk {d.hex()}, which no file of this version uses")
    _require(len(used) == n_ids, name, "packs lists a pack that holds none of its chunks")
    return packed


def _file_entry(f: dict, name: str, strong_hash: str | None, digest_size: int) -> FileEntry:
    _require(isinstance(f, dict), name, "a file entry is not a map")
    path = safe_relative_path(f["path"], name)
    size, mode, blob, lengths = f["size"], f["mode"], f["digests"], f["lengths"]
    _require(type(size) is int and size >= 0, name, f"{path!r} has an invalid size")
    _require(type(mode) is int and 0 <= mode <= 0o7777, name, f"{path!r} has an invalid mode")
    _require(isinstance(blob, bytes) and len(blob) % digest_size == 0, name, f"{path!r} has a bad digest list")
    _require(isinstance(lengths, list) and len(lengths) * digest_size == len(blob), name,
             f"{path!r} lists {len(blob) // digest_size} digests but {len(lengths) if isinstance(lengths, list) else '?'} lengths")
    _require(all(type(n) is int and 0 < n <= MAX_CHUNK_SIZE for n in lengths), name,
             f"{path!r} has a chunk length that is not from 1 to {MAX_CHUNK_SIZE} bytes (the format's largest chunk)")
    _require(sum(lengths) == size, name, f"{path!r} chunks add up to {sum(lengths)} bytes, its size is {size}")
    strong = f.get("strong")
    _require((strong is None) == (strong_hash is None) and (strong is None or isinstance(strong, bytes) and len(strong) == 32),
             name, f"{path!r} has a strong digest that does not fit the manifest's strong_hash")
    chunker = f.get("chunker")
    _require(chunker is None or _valid_chunker(chunker), name, f"{path!r} has a malformed chunker record")
    digests = tuple(blob[i:i + digest_size] for i in range(0, len(blob), digest_size))
    return FileEntry(path=path, size=size, mode=mode, digests=digests, lengths=tuple(lengths), strong=strong,
                     chunker=chunker)


MAX_CHUNKER_FIELDS = 16


def _valid_chunker(record: object) -> bool:
    """A chunker record is a small map with a string name and string or integer parameters."""
    return (isinstance(record, dict) and len(record) <= MAX_CHUNKER_FIELDS and isinstance(record.get("name"), str)
            and all(isinstance(k, str) and len(k) <= 32 and (isinstance(v, str) and len(v) <= 64 or type(v) is int)
                    for k, v in record.items()))


def safe_relative_path(path: object, name: str = "manifest") -> str:
    """Return ``path`` if it is a plain relative path that stays inside its destination."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise BadManifest(f"{name} has an empty, non-string or over-long file path")
    if path.startswith("/") or "\\" in path or any(ord(c) < 32 or c == "\x7f" for c in path):
        raise BadManifest(f"{name} names an unsafe file path {path!r} (absolute, backslash or control character); refusing it")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadManifest(f"{name} names file path {path!r} that leaves or re-enters its directory; refusing it")
    return path


def _check_tree(files: tuple[FileEntry, ...], dirs: tuple[str, ...], name: str) -> None:
    """No two entries at one path, and no file where another entry needs a directory."""
    file_paths = {f.path for f in files}
    _require(len(file_paths) == len(files), name, "a file path is listed twice")
    _require(not file_paths & set(dirs), name, "a path is listed both as file and as directory")
    for p in list(file_paths) + list(dirs):
        parent = posixpath.dirname(p)
        while parent:
            _require(parent not in file_paths, name, f"{p!r} lies below {parent!r}, which is a file")
            parent = posixpath.dirname(parent)
