"""Store upkeep: verify what versions reference, repair chunks from a local copy, collect garbage.

Every chunk is looked for where its version's manifest says it lives (cas.manifest ``locate``):
its own object, or a range of a pack, with the chunk's own object as the fallback for a packed
chunk (manifests are immutable, so a repair writes lost packed chunks as objects of their own).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from . import codec, intents, layout
from .backends.base import StoredObject, read_into
from .directio import aligned_buffer
from .digest import ChunkHash
from .errors import BadManifest, CasError, CorruptChunk
from .layout import CHUNKS, PACKS, TMP, TRASH, chunk_key, digest_of_chunk_key, id_of_pack_key
from .leases import all_leases, gc_lease, holder_is_dead, writer_lease
from .localfs import scan_source
from .integrity import new_hasher
from .manifest import ChunkLocation, FileEntry, Manifest, PackedChunk, location
from .planning import replan
from .transfer import (DEFAULT_MEMORY_BUDGET, ChunkJob, coalesce, hash_pieces, map_ordered, read_piece, read_run,
                       run_bounded, run_member, workers_within)

log = logging.getLogger("cas.gc")


@dataclass(frozen=True)
class Problem:
    model: str
    version: str
    file: str | None
    chunk: str | None  # hex digest
    problem: str

    def __str__(self) -> str:
        where = f"{self.model}@{self.version}"
        if self.file is not None:
            where += f" file {self.file!r}"
        if self.chunk is not None:
            where += f" chunk {self.chunk}"
        return f"{where}: {self.problem}"


@dataclass
class VerifyReport:
    versions: int = 0
    chunks: int = 0
    checked_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _manifests(store, ref) -> tuple[list[Manifest], list[Problem]]:
    """The manifests of one version (which must load) or of all, with the unreadable ones as problems."""
    if ref:
        return [store.manifest(ref)], []
    pairs = [(m, v) for m in store.models() for v in store.versions(m)]
    manifests, problems = [], []

    def load(mv):
        try:
            return store._load(*mv)[0]
        except CasError as exc:
            return Problem(mv[0], mv[1], None, None, f"manifest unreadable: {exc}")

    for result in run_bounded(load, pairs, store.n_workers):
        (problems if isinstance(result, Problem) else manifests).append(result)
    return manifests, problems


def _dangling_tags(store) -> list[Problem]:
    """A tag whose current target is a version that is not there (removed, or never written)."""
    found = []
    for model in store.backend.list(layout.REFS):
        try:
            tags = store.tags(model)
        except CasError as exc:
            found.append(Problem(model, "?", None, None, f"tags unreadable: {exc}"))
            continue
        for tag, version in tags.items():
            if not store._exists(model, version):
                found.append(Problem(model, version, None, None,
                                     f"tag {tag!r} points to this version, which does not exist; "
                                     f"`cas tag {model}@VERSION {tag}` or `cas untag {model} {tag}` fixes it"))
    return found


def check_chunk(backend, digest: bytes, length: int, chunk_hash: ChunkHash,
                where: ChunkLocation | None = None) -> str | None:
    """None if the stored chunk decodes to its digest, else what is wrong with it."""
    return read_chunk(backend, digest, length, chunk_hash, where)[0]


def read_chunk(backend, digest: bytes, length: int, chunk_hash: ChunkHash,
               where: ChunkLocation | None = None) -> tuple[str | None, memoryview | None]:
    """(None, the chunk's bytes) if the stored chunk decodes to its digest, else (what is wrong, None).

    A chunk in a pack (``where``) is read from its range; if the pack is missing or the chunk in
    it is damaged, from its own object if it has one (what get falls back to), and the problem
    names the pack.

    Reads into this thread's reusable buffers, never more than the largest encoding of ``length``
    bytes, and decodes at most ``length`` bytes (``length`` is bounded by the manifest format), so
    a huge or hostile object costs no more memory than a good one. The bytes returned are a view
    of this thread's chunk buffer: valid until this thread's next read_chunk.
    """
    if where is not None and where.in_pack:
        problem, data = read_packed(backend, digest, length, chunk_hash, where)
        if problem is None:
            return None, data
        own_problem, data = read_chunk(backend, digest, length, chunk_hash)
        if own_problem is None:
            return None, data
        if own_problem == "missing":
            return _lost(problem), None
        return f"{problem}; its own object is {own_problem}", None
    obj_buffer = aligned_buffer(codec.encoded_capacity(length), "object")
    try:
        obj = read_into(backend, chunk_key(digest.hex()), obj_buffer)
    except FileNotFoundError:
        return "missing", None
    except BufferError:
        return f"corrupt: its object is longer than any encoding of {length} bytes", None
    try:
        data = codec.decode_into(obj, aligned_buffer(length, "chunk"), expected_length=length, name="object")
    except CorruptChunk as exc:
        return f"corrupt: {exc}", None
    if chunk_hash.digest(data) != digest:
        return "corrupt: bytes do not match the digest", None
    return None, data


@lru_cache(maxsize=1024)
def _lost(problem: str) -> str:
    """One message string per lost pack, shared by its chunks' problems (a pack may hold a million)."""
    return f"{problem} and it has no object of its own"


def read_packed(backend, digest: bytes, length: int, chunk_hash: ChunkHash,
                where: ChunkLocation, obj=None) -> tuple[str | None, memoryview | None]:
    """The chunk from its pack range (at most ``where.length`` bytes, which the manifest bounds by
    the largest encoding of ``length``; ``obj``: those bytes, if a coalesced read fetched them), or
    what is wrong with it there."""
    if obj is None:
        try:
            obj = backend.read(where.key, where.offset, where.length)
        except FileNotFoundError:
            return f"missing: its pack {where.key} is missing", None
    if len(obj) != where.length:  # a table entry that runs past the end of its pack
        return f"corrupt: pack {where.key} ends {where.length - len(obj)} bytes before its object at {where.offset}", None
    try:
        data = codec.decode_into(obj, aligned_buffer(length, "chunk"), expected_length=length,
                                 name=f"its object at offset {where.offset} of pack {where.key}")
    except CorruptChunk as exc:
        return f"corrupt: {exc}", None
    if chunk_hash.digest(data) != digest:
        return f"corrupt: its bytes at offset {where.offset} of pack {where.key} do not match the digest", None
    return None, data


def check_packed(backend, items: Sequence[tuple[bytes, int, PackedChunk]], chunk_hash: ChunkHash,
                 n_workers: int) -> list[str | None]:
    """``read_packed``'s verdict on each (digest, raw length, pack-table entry), in order. Adjacent
    entries of a pack are fetched with one ranged read (``cas.transfer.coalesce``, as get reads
    them): a few requests per pack instead of one per chunk."""

    def check_run(run: list[ChunkJob]) -> list[tuple[int, str | None]]:
        block = read_run(backend, run)
        return [(id(job), read_packed(backend, job.digest, job.length, chunk_hash, location(job.digest, job.packed),
                                      run_member(block, run, job))[0]) for job in run]

    jobs = [ChunkJob(d, n, (), "", at) for d, n, at in items]
    verdicts: dict[int, str | None] = {}  # by job: a chunk may sit in two packs
    for run in run_bounded(check_run, coalesce(jobs), n_workers):
        verdicts.update(run)
    return [verdicts[id(j)] for j in jobs]


# A chunk and its entry in one version's pack table (None: its own object). The entries are the
# manifests' own objects, so a verify of a million packed chunks builds no location per chunk.
Item = tuple[bytes, "PackedChunk | None"]


def _item(m: Manifest, d: bytes) -> Item:
    return (d, m.packed.get(d))


def _check_item(store, item: Item, length: int, chunk_hash: ChunkHash) -> str | None:
    return check_chunk(store.backend, item[0], length, chunk_hash, location(*item) if item[1] else None)


def _check_workers(store, lengths: dict) -> int:
    """Threads for check_chunk (an object and a chunk buffer each) within the store's memory budget."""
    return workers_within(store.n_workers, max(lengths.values(), default=0), 2,
                          getattr(store, "memory_budget", DEFAULT_MEMORY_BUDGET))


CHECK_BATCH = 1 << 16  # packed chunks verify checks at once


def verify(store, ref=None, *, full: bool = False) -> VerifyReport:
    """Check that every chunk referenced (by one version, or all) exists; with ``full``, that it decodes
    to its digest, and that every file with a strong digest hashes to it (its chunks streamed in
    order through the strong hash). Each problem names model, version, file and chunk."""
    manifests, problems = _manifests(store, ref)
    chunk_hash = store.chunk_hash
    # every distinct (chunk, location) once; who uses a bad one is looked up after
    lengths: dict[Item, int] = {}
    for m in manifests:
        for d, n in m.chunk_lengths().items():
            lengths[_item(m, d)] = n
    report = VerifyReport(versions=len(manifests) + len(problems), chunks=len({d for d, _ in lengths}),
                          problems=problems + ([] if ref else _dangling_tags(store)))
    if full:
        verdicts: dict[Item, str | None] = {}
        report.problems += _verify_strong_files(store, manifests, chunk_hash, verdicts, report, lengths)
        rest = [item for item in lengths if item not in verdicts]
        workers = _check_workers(store, lengths)
        # packed chunks first, adjacent ones read together; one that fails in its pack is then judged
        # as any chunk is (its own object, if it has one, is what get falls back to)
        packed = [item for item in rest if item[1] is not None]
        for start in range(0, len(packed), CHECK_BATCH):  # a job per chunk: bounded for a million of them
            batch = packed[start:start + CHECK_BATCH]
            in_pack = check_packed(store.backend, [(d, lengths[(d, at)], at) for d, at in batch], chunk_hash, workers)
            verdicts.update((item, None) for item, problem in zip(batch, in_pack) if problem is None)
        again = [item for item in rest if item not in verdicts]
        verdicts.update(zip(again, run_bounded(lambda item: _check_item(store, item, lengths[item], chunk_hash), again,
                                               workers)))
        bad = {item: v for item, v in verdicts.items() if v}
        report.checked_bytes += sum(lengths[item] for item in rest)
    else:
        packs = {at.pack: location(d, at).key for d, at in lengths if at is not None}
        missing = store.backend.missing([chunk_key(d.hex()) for d, _ in lengths] + sorted(packs.values()))
        bad = {}
        for d, at in lengths:
            if chunk_key(d.hex()) not in missing:
                continue  # its own object (a packed chunk's fallback) is there
            if at is None:
                bad[(d, at)] = "missing"
            elif packs[at.pack] in missing:
                bad[(d, at)] = _lost(f"missing: its pack {packs[at.pack]} is missing")
    if any(v.startswith("missing") for v in bad.values()):
        # a gc that stopped between setting objects aside and deleting them left them in trash/
        aside = {layout.untrashed_key(o.key) for o in store.backend.walk(TRASH)}
        for (d, at), verdict in bad.items():
            key = chunk_key(d.hex()) if at is None else location(d, at).key
            if verdict.startswith("missing") and key in aside:
                bad[(d, at)] = f"{verdict}, set aside in trash/ by a gc that stopped: `cas gc` puts it back"
    if bad:
        for m in manifests:
            for f in m.files:
                for d in dict.fromkeys(f.digests):
                    item = _item(m, d)
                    if item in bad:
                        report.problems.append(Problem(m.model, m.version, f.path, d.hex(), bad[item]))
    return report


def _verify_strong_files(store, manifests: list[Manifest], chunk_hash: ChunkHash, verdicts: dict,
                         report: VerifyReport, lengths: dict[Item, int]) -> list[Problem]:
    """Stream every file that has a strong digest through its strong hash, chunk by chunk in file
    order (chunks fetched ahead in parallel, a bounded number at a time), checking each chunk
    against its key on the way; records each chunk's verdict in ``verdicts``. A file whose chunks
    all match their keys but whose bytes miss its strong digest holds forged (colliding) chunks."""
    files: list[tuple[Manifest, FileEntry]] = [(m, f) for m in manifests if m.strong_hash for f in m.files]

    def fetch(item: tuple[int, Item, int]):
        index, chunk, length = item
        verdict, data = read_chunk(store.backend, chunk[0], length, chunk_hash,
                                   location(*chunk) if chunk[1] else None)
        return index, chunk, length, verdict, None if data is None else bytes(data)  # out of the thread's buffer

    # each thread: an object and a chunk buffer, plus at most one copy waiting in the ordered window
    n_threads = workers_within(store.n_workers, max(lengths.values(), default=0), 3,
                               getattr(store, "memory_budget", DEFAULT_MEMORY_BUDGET))

    computed: dict[int, bytes | None] = {}  # file index -> its strong digest; None if a chunk was bad
    current, hasher = -1, None
    stream = ((i, _item(m, d), length) for i, (m, f) in enumerate(files) for _off, length, d in f.chunks())
    for index, digest, length, verdict, data in map_ordered(fetch, stream, n_threads, in_flight=n_threads):
        if index != current:
            if current >= 0:
                computed[current] = hasher.digest() if hasher is not None else None
            current, hasher = index, new_hasher(files[index][0].strong_hash)
        if verdicts.get(digest) is None:
            verdicts[digest] = verdict
        if verdict is not None:
            hasher = None  # the chunk problem is reported; the file's digest cannot be judged
        elif hasher is not None:
            hasher.update(data)
        report.checked_bytes += length
    if current >= 0:
        computed[current] = hasher.digest() if hasher is not None else None
    problems = []
    for i, (m, f) in enumerate(files):
        got = computed[i] if i in computed else new_hasher(m.strong_hash).digest()  # an empty file has no chunks
        if got is not None and got != f.strong:
            problems.append(Problem(m.model, m.version, f.path, None,
                                    f"does not match its {m.strong_hash} digest although every chunk matches its "
                                    f"{m.hash} key: someone stored forged chunks under its keys; get refuses this file. Keep "
                                    "models shared with untrusted writers in a store with blake3-256 keys "
                                    "(`cas init --chunk-hash blake3`)"))
    return problems


@dataclass
class RepairReport:
    bad_chunks: int = 0
    repaired: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def repair(store, ref, local_path: str) -> RepairReport:
    """Re-store the damaged or missing chunks of a version from a local copy of it.

    The local copy is cut as the version was (cas.planning.replan) and hashed; any chunk whose
    digest matches a bad one is written back (the bad object is removed first). Chunks the copy does not hold are
    listed as unrepairable. A chunk lost from a pack is written as an object of its own (the
    manifest, which names the pack, is immutable), which every reader falls back to.
    """
    manifest = store.manifest(ref)
    lengths = manifest.chunk_lengths()
    chunk_hash = store.chunk_hash
    verdicts = run_bounded(lambda d: _check_item(store, _item(manifest, d), lengths[d], chunk_hash),
                           list(lengths), _check_workers(store, lengths))
    bad = {d for d, v in zip(lengths, verdicts) if v}
    report = RepairReport(bad_chunks=len(bad))
    if not bad:
        return report
    _kind, sources, _dirs = scan_source(local_path, verb="repair from")
    pieces = replan(sources, manifest).pieces()
    found = {}
    for d, p in zip(hash_pieces(pieces, store.n_workers, chunk_hash=chunk_hash), pieces):
        if d in bad:
            found.setdefault(d, p)
    with writer_lease(store.backend, ttl=store.lease_ttl):
        for d in sorted(bad):
            piece = found.get(d)
            if piece is None:
                report.unrepairable.append(d.hex())
                continue
            raw = read_piece(piece.source, piece.offset, piece.length)
            if chunk_hash.digest(raw) != d:
                report.unrepairable.append(d.hex())
                continue
            store.backend.delete(chunk_key(d.hex()))
            try:
                store.backend.create(chunk_key(d.hex()), _reencode(raw, manifest))
            except FileExistsError:
                pass  # another repair or put restored it first
            report.repaired.append(d.hex())
        store.backend.flush()
    return report


@dataclass
class GcReport:
    dry_run: bool
    versions: int = 0
    referenced_chunks: int = 0
    deleted_chunks: int = 0
    deleted_bytes: int = 0  # chunk objects and packs
    young_chunks: int = 0  # unreferenced but younger than the grace period: left for a later gc
    referenced_packs: int = 0
    deleted_packs: int = 0
    young_packs: int = 0
    deleted_staging: int = 0
    deleted_leases: int = 0
    deleted_partials: int = 0  # leftovers of killed gets on this host (see localfs.sweep_dead_partials)
    restored_chunks: int = 0  # chunks a stopped gc had set aside (trash/) that a version names: put back
    pending_versions: int = 0  # versions writers recorded and may still publish: their chunks are kept
    deleted_pending: int = 0  # such records of writers known dead, or older than cas.intents.MAX_AGE

    def as_dict(self) -> dict:
        return asdict(self)


STAGING_MAX_AGE = 3600.0


def gc(store, *, dry_run: bool = False, wait: float = 600.0, staging_age: float = STAGING_MAX_AGE,
       grace: float | None = None) -> GcReport:
    """Delete chunks and packs no manifest references, staging leftovers and expired leases.

    A pack is live while any manifest reads a chunk from it, and is deleted whole once none does
    (a pack's other chunks may belong to removed versions: they are freed with it, never before).

    A staging object is a leftover once it is ``staging_age`` seconds old: a single object's
    write takes seconds, and leases (which are written through staging too) keep working
    while gc runs, so young staging objects are never touched.

    Runs under the gc lease: writers wait while it runs, and it starts only once running writers
    have finished, so no put can publish a manifest naming a chunk gc is deleting. Three guards
    keep that true when gc itself is paused (a sleeping laptop, SIGSTOP) or cut off (a NameNode
    failover that stalls its requests and its lease renewals alike) past its lease, so that
    writers went ahead meanwhile and may have reused a chunk gc had judged garbage:

    - the lease is checked before every delete, and gc stops as soon as it lapsed;
    - a chunk younger than ``grace`` seconds (default: the lease TTL) is never deleted;
    - gc does not delete a chunk (or a pack) outright: it moves it aside (into ``trash/``, a rename on
      local and HDFS stores, a server-side copy on S3) and checks its lease again once the move
      has returned. A move that returned while the lease held ran while no writer could work,
      so the chunk is deleted from the trash; one that returned after may have landed after a
      writer reused the chunk, so gc moves it back and stops. A gc killed in between leaves the
      chunk in the trash, where the next gc finds it: that gc puts every such chunk back into
      place first, before it lists the versions, and then treats it like any other chunk
      (garbage goes through the trash again). It never deletes another gc's trash on the word of
      its own listing: a stalled gc's move may land after that listing, with the trash holding
      the only copy of a chunk a version published meanwhile names.

    A writer paused on its way to publishing may land its manifest after this gc listed the
    versions; it records that manifest under ``pending/`` first (cas.intents), and gc keeps
    whatever a record names until the record is stale.

    A dry run takes no lease and deletes nothing; its figures are what a real run would free now.
    """
    grace = store.lease_ttl if grace is None else grace
    lease = None if dry_run else gc_lease(store.backend, ttl=store.lease_ttl, wait=wait)
    try:
        # Chunks a gc that stopped (killed, or paused past its lease) set aside and never finished
        # with go back into place first, whatever they are: that loses nothing, so it needs no fence,
        # and the walk of chunks/ below then judges them like any other chunk.
        put_back: list[str] = []
        if not dry_run:
            trashed = [o.key for o in store.backend.walk(TRASH)]
            put_back = [k for k in run_bounded(lambda k: _put_back(store.backend, k), trashed, store.n_workers) if k]
        # The versions writers may still publish, read before the published ones: a record withdrawn
        # in between belongs to a manifest that was out by then.
        try:
            waiting = intents.pending(store.backend)
        except BadManifest as exc:
            raise CasError(f"gc stopped before deleting anything: {exc}") from None
        manifests, problems = _manifests(store, None)
        if problems:
            raise CasError(f"gc stopped before deleting anything: {problems[0]}; restore that manifest from "
                           f"another copy of the store or remove the version (`cas rm {problems[0].model}@"
                           f"{problems[0].version}`) first: gc must know every chunk a version needs")
        referenced = {d.hex() for m in manifests for f in m.files for d in f.digests} | waiting.chunks
        referenced_packs = {p.hex() for m in manifests for p in m.pack_ids()} | waiting.packs
        unreferenced = [o for o in store.backend.walk(CHUNKS) if digest_of_chunk_key(o.key) not in referenced]
        unreferenced_packs = [o for o in store.backend.walk(PACKS) if id_of_pack_key(o.key) not in referenced_packs]
        young_after = time.time() - grace  # the same grace for packs as for chunks: a put may be reusing it
        garbage = [o for o in unreferenced if o.mtime < young_after]
        garbage_packs = [o for o in unreferenced_packs if o.mtime < young_after]
        staging = [o.key for o in store.backend.walk(TMP) if (layout.key_age(o.key) or 0) > staging_age]
        stale = [lease_.key for lease_ in all_leases(store.backend)
                 if lease_.expires < time.time() or holder_is_dead(lease_)]
        report = GcReport(dry_run=dry_run, versions=len(manifests), referenced_chunks=len(referenced),
                          deleted_chunks=len(garbage), deleted_bytes=sum(o.size for o in garbage + garbage_packs),
                          young_chunks=len(unreferenced) - len(garbage), referenced_packs=len(referenced_packs),
                          deleted_packs=len(garbage_packs), young_packs=len(unreferenced_packs) - len(garbage_packs),
                          deleted_staging=len(staging), deleted_leases=len(stale), pending_versions=waiting.kept,
                          deleted_pending=len(waiting.stale))
        if not dry_run:
            stopped = ("deleting unreferenced objects; gc stopped without deleting the rest, since writers "
                       "may have reused them: run `cas gc` again")

            def delete_chunk(obj: StoredObject) -> None:
                lease.check(stopped)
                aside = layout.trash_key(lease.owner, obj.key)
                try:
                    store.backend.move(obj.key, aside)
                except FileNotFoundError:
                    return  # removed by hand meanwhile
                if not lease.intact(lease.ttl / 2):
                    # The move returned after the lease lapsed, so it may have landed after a writer
                    # (which went ahead once the lease expired) found the chunk and reused it.
                    log.warning("the gc lease lapsed while %s was being deleted; putting it back", obj.key)
                    try:
                        store.backend.move(aside, obj.key)
                    except FileNotFoundError:
                        pass  # a later gc put it back already
                    lease.check(stopped)
                store.backend.delete(aside)

            def delete(key: str) -> None:
                # Leftovers in staging and dead leases: nothing reuses them, but gc stops with its lease.
                lease.check(stopped)
                store.backend.delete(key)

            report.restored_chunks = sum(digest_of_chunk_key(k) in (referenced_packs if k.startswith(f"{PACKS}/")
                                                                    else referenced) for k in put_back)
            run_bounded(delete_chunk, garbage + garbage_packs, store.n_workers)
            run_bounded(delete, staging + waiting.stale + [k for k in stale if k != lease.key], store.n_workers)
            if store.cache:
                report.deleted_partials = len(store.cache.sweep_dead_partials())
        return report
    finally:
        if lease:
            lease.release()


def _put_back(backend, trashed: str) -> str | None:
    """Move a trash/ entry back to the chunk key it was set aside from; that key, or None if it
    was gone already (or was no such entry: not a chunk, so it is deleted)."""
    original = layout.untrashed_key(trashed)
    if original is None:
        backend.delete(trashed)
        return None
    try:
        backend.move(trashed, original)
    except FileNotFoundError:
        return None
    return original


def _reencode(raw, manifest) -> bytes:
    """A chunk object for ``raw`` as the put that wrote ``manifest`` would store it (its codec policy,
    or auto for a policy this cas does not know)."""
    policy = manifest.codec if manifest.codec in codec.POLICIES else codec.DEFAULT_POLICY
    return codec.encode(raw, policy=policy, level=manifest.level)


def chunk_codecs(store, manifests, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """(codec name, raw length, stored size) of every distinct stored chunk of ``manifests`` (``sizes``:
    stored size of chunk objects by hex digest; a packed chunk is looked at in its pack, where its
    version says it is), from its 16-byte header: one small read per chunk, in parallel.
    A header that is not a chunk object's counts as "unreadable" (`cas verify` says more)."""
    found: dict[bytes, tuple[int, ChunkLocation]] = {}
    for m in manifests:
        for d, n in m.chunk_lengths().items():
            if d in m.packed or d.hex() in sizes:
                found.setdefault(d, (n, m.location(d)))
    present = [(d, n, where) for d, (n, where) in found.items()]

    def one(item: tuple[bytes, int, ChunkLocation]) -> tuple[str, int, int]:
        d, n, where = item
        try:
            kind, _ = codec.read_header(store.backend.read(where.key, where.offset, codec.HEADER_SIZE))
            name = codec.CODEC_NAMES[kind]
        except (CorruptChunk, FileNotFoundError):
            name = "unreadable"
        return name, n, where.length if where.in_pack else sizes[d.hex()]

    return run_bounded(one, present, store.n_workers)
