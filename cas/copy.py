"""Copy a version, with its chunks, from one store to another (HDFS to S3, S3 to local, ...).

Only chunks the destination lacks are sent (one bulk ``missing`` question), as stored objects:
nothing is recompressed. Every object sent is first decoded and checked against its digest, so a
damaged source chunk stops the copy instead of spreading. The order is a put's: chunks, a flush,
the manifest (created exclusively, byte for byte the source's, so the version label is kept),
a flush, then the tags asked for, all under the destination's writer lease (fenced like a put's:
if it lapsed, the chunks are asked about again before anything names them). A copy killed at any
point leaves no visible version at the destination; running it again sends only what is missing.

Packs the version reads from are copied whole (the manifest names them by id, the hash of their
bytes, which is checked before sending). A pack missing or damaged at the source is replaced by
the individual objects of the version's chunks in it, which every reader falls back to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial

from . import codec, refs
from .backends.base import ObjectTooLarge, read_into, read_limited
from .directio import aligned_buffer
from .errors import AlreadyExists, CasError, CorruptChunk, NotFound
from .layout import chunk_key, manifest_key, pack_key, tombstone_key
from .names import check_name
from .packing import LARGEST_PACK
from .progress import byte_bar
from .transfer import run_bounded, workers_within



@dataclass
class CopyReport:
    """What one copy did."""

    model: str
    version: str
    source: str
    destination: str
    chunks: int = 0  # distinct chunks of the version
    sent_chunks: int = 0  # chunks the destination lacked, sent
    sent_raw_bytes: int = 0
    sent_stored_bytes: int = 0  # chunk objects and packs
    sent_packs: int = 0
    manifest_copied: bool = False  # False: the destination already had this exact version
    tags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def copy_version(source, ref, destination, *, tags=(), progress: bool = False) -> CopyReport:
    """Copy the version ``ref`` names from the ``source`` Store to the ``destination`` Store."""
    tags = [check_name(t, "tag") for t in tags]
    model, version = source.resolve(ref)
    manifest, packed = source._load(model, version)
    dst = destination.backend
    if dst.url == source.backend.url:
        raise CasError(f"{model}@{version}: source and destination are the same store ({dst.url})",
                       model=model, version=version)
    # Chunk keys must mean the same on both sides: an empty destination takes the source's chunk
    # hash (its settings are created), any other must already use it (SettingsConflict).
    destination._expect_chunk_hash(source.chunk_hash.name)
    report = CopyReport(model, version, source.backend.url, dst.url, chunks=len(manifest.chunk_lengths()), tags=tags)
    present = _destination_has(destination, model, version, packed)

    lengths = manifest.chunk_lengths()
    sent: dict[bytes, int] = {}  # digest -> stored size: what this copy sent
    sent_packs: dict[bytes, int] = {}  # pack id -> bytes
    lease, intent = destination._writing(), None
    label = f"{model}@{version}"
    try:
        lease = _send_missing(source, destination, lease, manifest, sent, sent_packs, label, progress)
        if not present:
            # on record before it is published, so a gc keeps its chunks however late it lands (cas.intents)
            lease, intent = destination.record_fenced(
                lease, lambda: packed, partial(_send_missing, source, destination, manifest=manifest, sent=sent,
                                               sent_packs=sent_packs, label=label, progress=progress, lapsed=True),
                f"publishing {label}")
            try:
                dst.create(manifest_key(model, version), packed)
            except FileExistsError:
                _destination_has(destination, model, version, packed)  # raises unless it is ours, byte for byte
            dst.flush()
            if not lease.intact():  # paused while publishing: make sure gc left every chunk
                lease = _send_missing(source, destination, lease, manifest, sent, sent_packs, label, progress,
                                      lapsed=True)
        for tag in tags:
            refs.set_tag(dst, model, tag, version)
    finally:
        if intent is not None:
            intent.withdraw()
        lease.release()

    in_sent_packs = [d for d, at in manifest.packed.items() if at.pack in sent_packs and d not in sent]
    report.sent_chunks = len(sent) + len(in_sent_packs)
    report.sent_raw_bytes = sum(lengths[d] for d in (*sent, *in_sent_packs))
    report.sent_stored_bytes = sum(sent.values()) + sum(sent_packs.values())
    report.sent_packs = len(sent_packs)
    report.manifest_copied = not present
    return report


def _send_missing(source, destination, lease, manifest, sent: dict, sent_packs: dict, label: str, progress: bool,
                  *, lapsed: bool = False):
    """Send the chunks and packs the destination lacks, fenced by its writer lease as a put's are
    (``Store.send_fenced``); returns the lease now held."""
    dst = destination.backend
    lengths = manifest.chunk_lengths()
    members: dict[bytes, list[bytes]] = {}  # pack id -> the version's chunks in it
    for d, at in manifest.packed.items():
        members.setdefault(at.pack, []).append(d)

    def send_round() -> None:
        packs = {p: pack_key(p.hex()) for p in members}
        lacking = dst.missing([chunk_key(d.hex()) for d in lengths] + list(packs.values()))
        copied = _send_packs(source, dst, [p for p, key in packs.items() if key in lacking], label)
        sent_packs.update(copied)
        # a chunk with no object of its own at the destination: sent, unless the destination has its pack now
        to_send = [(d, n) for d, n in lengths.items() if chunk_key(d.hex()) in lacking
                   and not (d in manifest.packed and (manifest.packed[d].pack in copied
                                                      or packs[manifest.packed[d].pack] not in lacking))]
        with byte_bar(f"copy {label}", sum(n for _, n in to_send), progress) as bar:
            def one(item: tuple[bytes, int]) -> int:
                d, length = item
                where = manifest.location(d) if d in manifest.packed else None
                obj = _verified_object(source.backend, d, length, label, source.chunk_hash.digest, where)
                try:
                    dst.create(chunk_key(d.hex()), obj)
                except FileExistsError:
                    pass  # content-addressed: someone stored it meanwhile
                bar(length)
                return len(obj)

            sent.update(zip((d for d, _ in to_send), run_bounded(one, to_send, destination.n_workers)))

    return destination.send_fenced(lease, send_round, f"copying {label}", lapsed=lapsed)


def _send_packs(source, dst, wanted: list[bytes], label: str) -> dict[bytes, int]:
    """Copy each wanted pack whose source bytes hash to its id; returns {pack id: bytes} of those
    sent. A pack missing or damaged at the source, or larger than any pack a put writes, is left
    out (its chunks go on their own, read from their ranges)."""
    # a pack is held whole in memory: as many threads as the largest packs fit in the memory budget,
    # and never more of one than a put writes, whatever a damaged or hostile store holds
    n_threads = workers_within(source.n_workers, LARGEST_PACK, 1, source.memory_budget)

    def one(pack_id: bytes) -> tuple[bytes, int | None]:
        key = pack_key(pack_id.hex())
        try:
            data = read_limited(source.backend, key, LARGEST_PACK, f"pack of {label}")
        except (FileNotFoundError, ObjectTooLarge):
            return pack_id, None
        if source.chunk_hash.digest(data) != pack_id:
            return pack_id, None  # damaged: never spread it
        try:
            dst.create(key, data)
        except FileExistsError:
            pass  # content-addressed: someone stored it meanwhile
        return pack_id, len(data)

    return {p: n for p, n in run_bounded(one, wanted, n_threads) if n is not None}


def _destination_has(destination, model: str, version: str, packed: bytes) -> bool:
    """True if the destination holds exactly this version; AlreadyExists if it holds another one
    under the same label (or removed that label)."""
    dst = destination.backend
    try:
        there = dst.read(manifest_key(model, version))
    except FileNotFoundError:
        if not dst.missing([tombstone_key(model, version)]):
            raise AlreadyExists(f"{model}@{version} was removed from {dst.url} and its label stays reserved there; "
                                "nothing was copied", model=model, version=version) from None
        return False
    if there != packed:
        raise AlreadyExists(f"{dst.url} already has a different {model}@{version}; versions are immutable, "
                            "nothing was copied", model=model, version=version)
    return True


def _verified_object(backend, digest: bytes, length: int, label: str, digest_of, where=None) -> memoryview:
    """The stored object of one chunk, read into this thread's buffer and checked to decode to its
    digest (read again once before calling it corrupt). Valid until the thread's next call.

    A packed chunk (``where``) whose pack could not be copied whole is read from its range in the
    pack and sent as an object of its own; failing that, its own object at the source is used."""
    hex_digest = digest.hex()
    obj_buffer = aligned_buffer(codec.encoded_capacity(length), "object")
    out = aligned_buffer(length, "chunk")
    problem = ""
    if where is not None and where.in_pack:
        try:
            obj = backend.read(where.key, where.offset, where.length)
            data = codec.decode_into(obj, out, expected_length=length, name=f"chunk {hex_digest}")
            if digest_of(data) == digest:
                return memoryview(obj)
            problem = f"its bytes in pack {where.key} do not match its digest"
        except FileNotFoundError:
            problem = f"its pack {where.key} is missing"
        except CorruptChunk as exc:
            problem = f"in pack {where.key}: {exc}"
    for _attempt in range(2):
        try:
            obj = read_into(backend, chunk_key(hex_digest), obj_buffer)
        except FileNotFoundError:
            if problem:
                raise CorruptChunk(f"chunk {hex_digest} of {label} is corrupt in the source {backend.url} ({problem}) "
                                   "and has no object of its own there; nothing was copied past it: run `cas verify` "
                                   "and `cas repair` there, then copy again", digest=hex_digest) from None
            raise NotFound(f"chunk {hex_digest} of {label} is missing from the source {backend.url}; "
                           "run `cas verify` and `cas repair` there, then copy again", digest=hex_digest) from None
        except BufferError:
            problem = f"its object is longer than any encoding of {length} bytes"
            continue
        try:
            data = codec.decode_into(obj, out, expected_length=length, name=f"chunk {hex_digest}")
        except CorruptChunk as exc:
            problem = str(exc)
            continue
        if digest_of(data) == digest:
            return memoryview(obj)
        problem = "its bytes do not match its digest"
    raise CorruptChunk(f"chunk {hex_digest} of {label} is corrupt in the source {backend.url} ({problem}); "
                       "nothing was copied past it: run `cas verify` and `cas repair` there, then copy again",
                       digest=hex_digest)
