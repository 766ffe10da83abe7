"""Store upkeep: verify what versions reference, repair chunks from a local copy, collect garbage."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from . import codec, layout
from .backends.base import read_into
from .directio import aligned_buffer
from .digest import digest as digest_of
from .errors import CasError, CorruptChunk
from .layout import CHUNKS, TMP, chunk_key, digest_of_chunk_key
from .leases import all_leases, gc_lease, holder_is_dead, writer_lease
from .localfs import scan_source
from .manifest import Manifest
from .planning import replan
from .transfer import DEFAULT_MEMORY_BUDGET, hash_pieces, read_piece, run_bounded, workers_within


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


def check_chunk(backend, digest: bytes, length: int) -> str | None:
    """None if the stored chunk decodes to its digest, else what is wrong with it.

    Reads into this thread's reusable buffers, never more than the largest encoding of ``length``
    bytes, and decodes at most ``length`` bytes (``length`` is bounded by the manifest format), so
    a huge or hostile object costs no more memory than a good one.
    """
    obj_buffer = aligned_buffer(codec.encoded_capacity(length), "object")
    try:
        obj = read_into(backend, chunk_key(digest.hex()), obj_buffer)
    except FileNotFoundError:
        return "missing"
    except BufferError:
        return f"corrupt: its object is longer than any encoding of {length} bytes"
    try:
        data = codec.decode_into(obj, aligned_buffer(length, "chunk"), expected_length=length, name="object")
    except CorruptChunk as exc:
        return f"corrupt: {exc}"
    return None if digest_of(data) == digest else "corrupt: bytes do not match the digest"


def _check_workers(store, lengths: dict[bytes, int]) -> int:
    """Threads for check_chunk (an object and a chunk buffer each) within the store's memory budget."""
    return workers_within(store.n_workers, max(lengths.values(), default=0), 2,
                          getattr(store, "memory_budget", DEFAULT_MEMORY_BUDGET))


def verify(store, ref=None, *, full: bool = False) -> VerifyReport:
    """Check that every chunk referenced (by one version, or all) exists; with ``full``, that it decodes
    to its digest. Each problem names model, version, file and chunk."""
    manifests, problems = _manifests(store, ref)
    lengths: dict[bytes, int] = {}  # every distinct chunk once; who uses a bad one is looked up after
    for m in manifests:
        for f in m.files:
            lengths.update(zip(f.digests, f.lengths))
    report = VerifyReport(versions=len(manifests) + len(problems), chunks=len(lengths),
                          problems=problems + ([] if ref else _dangling_tags(store)))
    if full:
        verdicts = run_bounded(lambda d: check_chunk(store.backend, d, lengths[d]), list(lengths),
                               _check_workers(store, lengths))
        bad = {d: v for d, v in zip(lengths, verdicts) if v}
        report.checked_bytes = sum(lengths.values())
    else:
        missing = store.backend.missing(chunk_key(d.hex()) for d in lengths)
        bad = {d: "missing" for d in lengths if chunk_key(d.hex()) in missing}
    if bad:
        for m in manifests:
            for f in m.files:
                for d in dict.fromkeys(f.digests):
                    if d in bad:
                        report.problems.append(Problem(m.model, m.version, f.path, d.hex(), bad[d]))
    return report


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
    listed as unrepairable.
    """
    manifest = store.manifest(ref)
    lengths = manifest.chunk_lengths()
    verdicts = run_bounded(lambda d: check_chunk(store.backend, d, lengths[d]), list(lengths),
                           _check_workers(store, lengths))
    bad = {d for d, v in zip(lengths, verdicts) if v}
    report = RepairReport(bad_chunks=len(bad))
    if not bad:
        return report
    _kind, sources, _dirs = scan_source(local_path)
    pieces = replan(sources, manifest).pieces()
    found = {}
    for d, p in zip(hash_pieces(pieces, store.n_workers), pieces):
        if d in bad:
            found.setdefault(d, p)
    with writer_lease(store.backend, ttl=store.lease_ttl):
        for d in sorted(bad):
            piece = found.get(d)
            if piece is None:
                report.unrepairable.append(d.hex())
                continue
            raw = read_piece(piece.source, piece.offset, piece.length)
            if digest_of(raw) != d:
                report.unrepairable.append(d.hex())
                continue
            store.backend.delete(chunk_key(d.hex()))
            try:
                store.backend.create(chunk_key(d.hex()), codec.encode(raw, level=manifest.level))
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
    deleted_bytes: int = 0
    young_chunks: int = 0  # unreferenced but younger than the grace period: left for a later gc
    deleted_staging: int = 0
    deleted_leases: int = 0
    deleted_partials: int = 0  # leftovers of killed gets on this host (see localfs.sweep_dead_partials)

    def as_dict(self) -> dict:
        return asdict(self)


STAGING_MAX_AGE = 3600.0


def gc(store, *, dry_run: bool = False, wait: float = 600.0, staging_age: float = STAGING_MAX_AGE,
       grace: float | None = None) -> GcReport:
    """Delete chunks no manifest references, staging leftovers and expired leases.

    A staging object is a leftover once it is ``staging_age`` seconds old: a single object's
    write takes seconds, and leases (which are written through staging too) keep working
    while gc runs, so young staging objects are never touched.

    Runs under the gc lease: writers wait while it runs, and it starts only once running writers
    have finished, so no put can publish a manifest naming a chunk gc is deleting. Two guards
    keep that true when gc itself is paused (a sleeping laptop, SIGSTOP) past its lease, so that
    writers went ahead meanwhile: the lease is checked before every delete, and gc stops as soon
    as it lapsed; and a chunk younger than ``grace`` seconds (default: the lease TTL) is never
    deleted, whatever gc believes about it. What remains is a pause that falls between one
    check and its delete call (at most ``n_workers`` deletes in flight) while a writer reuses
    exactly that old chunk; ``cas verify`` would report it. A dry run takes no lease and deletes nothing;
    its figures are what a real run would free now.
    """
    grace = store.lease_ttl if grace is None else grace
    lease = None if dry_run else gc_lease(store.backend, ttl=store.lease_ttl, wait=wait)
    try:
        manifests, problems = _manifests(store, None)
        if problems:
            raise CasError(f"gc stopped before deleting anything: {problems[0]}; "
                           "fix or remove that version first (gc must know every chunk a version needs)")
        referenced = {d.hex() for m in manifests for f in m.files for d in f.digests}
        unreferenced = [o for o in store.backend.walk(CHUNKS) if digest_of_chunk_key(o.key) not in referenced]
        young_after = time.time() - grace
        garbage = [o for o in unreferenced if o.mtime < young_after]
        staging = [o.key for o in store.backend.walk(TMP) if (layout.staging_age(o.key) or 0) > staging_age]
        stale = [lease_.key for lease_ in all_leases(store.backend)
                 if lease_.expires < time.time() or holder_is_dead(lease_)]
        report = GcReport(dry_run=dry_run, versions=len(manifests), referenced_chunks=len(referenced),
                          deleted_chunks=len(garbage), deleted_bytes=sum(o.size for o in garbage),
                          young_chunks=len(unreferenced) - len(garbage),
                          deleted_staging=len(staging), deleted_leases=len(stale))
        if not dry_run:
            keys = [o.key for o in garbage] + staging + [k for k in stale if k != lease.key]

            def delete(key: str) -> None:
                # Checked before every delete: a gc paused past its lease must not delete what
                # writers, which went ahead meanwhile, may have reused.
                lease.check("deleting unreferenced objects; gc stopped without deleting the rest, since writers "
                            "may have reused them: run `cas gc` again")
                store.backend.delete(key)

            run_bounded(delete, keys, store.n_workers)
            if store.cache:
                report.deleted_partials = len(store.cache.sweep_dead_partials())
        return report
    finally:
        if lease:
            lease.release()
