"""The parallel pipelines: hash a local model, upload the chunks a store lacks, download a version.

All three run chunk tasks in a thread pool with bounded in-flight work (zstd and file I/O release
the GIL, so threads give real parallelism), cancel what is pending on the first error, and reuse
one read buffer per thread so the hot loop does not allocate a fresh chunk-sized buffer.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from . import codec
from .digest import DEFAULT_CHUNK_HASH, ChunkHash, source_check
from .errors import CorruptChunk, MissingChunk, SourceChanged
from .layout import chunk_key, pack_key
from .manifest import ChunkLocation, PackedChunk, location
from .packing import PackBuilder
from .backends.base import read_into
from .directio import aligned_buffer, write_at
from .integrity import new_hasher
from .localfs import SourceFile

Progress = Callable[[int], None]


def cpu_threads(n_workers: int) -> int:
    """How many of ``n_workers`` threads may compress or decompress at once: one per usable core.

    The rest wait on disk or network meanwhile. More compressing threads than cores only evict
    each other's zstd state from the caches: on a 2-vCPU VM, compressing 1 GiB in 4 threads took
    ~15% longer than in 2 (bench/README.md).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_workers, cores, _cgroup_cpu_limit() or cores))


def _cgroup_cpu_limit() -> int | None:
    """The CPU quota of this container (cgroup v2 ``cpu.max``, e.g. a Kubernetes CPU limit), in whole cores."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def _no_progress(_n: int) -> None:
    pass


# Bytes of chunk buffers the threads of one pipeline may hold at once. Each thread keeps its
# buffers for the whole pipeline (allocating per chunk costs more CPU than the copy), so memory
# is threads x buffers x chunk size: 256 MiB chunks in 8 threads held 2.1 GB, 200 threads of
# 4 MiB chunks 1.1 GB. Pipelines run fewer threads when their chunks are large instead.
DEFAULT_MEMORY_BUDGET = 512 << 20


def workers_within(n_workers: int, chunk_bytes: int, buffers_per_task: int, memory_budget: int) -> int:
    """How many of ``n_workers`` threads fit ``memory_budget`` when each holds ``buffers_per_task``
    buffers of ``chunk_bytes``; always at least one (a single chunk larger than the budget still moves)."""
    per_task = max(1, chunk_bytes) * buffers_per_task
    return max(1, min(n_workers, memory_budget // per_task))


def check_memory_budget(memory_budget: int) -> int:
    if not isinstance(memory_budget, int) or isinstance(memory_budget, bool) or memory_budget < 1:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    return memory_budget


def run_bounded(fn: Callable, items: Iterable, n_workers: int, *, in_flight: int | None = None) -> list:
    """Apply ``fn`` to every item in ``n_workers`` threads; results in item order.

    At most ``in_flight`` tasks (default 2 x n_workers) are queued at once, so memory stays flat
    however many chunks there are. The first exception cancels the rest and is re-raised.
    """
    limit = in_flight or 2 * n_workers
    results: dict[int, object] = {}
    pending: dict[Future, int] = {}
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="cas") as pool:
        try:
            for index, item in enumerate(items):
                if len(pending) >= limit:
                    _collect(wait(pending, return_when=FIRST_COMPLETED).done, pending, results)
                pending[pool.submit(fn, item)] = index
            while pending:
                _collect(wait(pending, return_when=FIRST_COMPLETED).done, pending, results)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return [results[i] for i in range(len(results))]


def map_ordered(fn: Callable, items: Iterable, n_workers: int, *, in_flight: int | None = None) -> Iterator:
    """Yield ``fn(item)`` for every item in item order, computed ahead in ``n_workers`` threads.

    At most ``in_flight`` results (default 2 x n_workers) wait unconsumed, so a long ordered
    stream (every chunk of a file, for a sequential hash) keeps memory flat. Stopping early or an
    exception cancels what is pending.
    """
    limit = in_flight or 2 * n_workers
    window: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="cas") as pool:
        try:
            for item in items:
                if len(window) >= limit:
                    yield window.popleft().result()
                window.append(pool.submit(fn, item))
            while window:
                yield window.popleft().result()
        finally:
            for fut in window:
                fut.cancel()


def _collect(done, pending: dict, results: dict) -> None:
    for fut in done:
        index = pending.pop(fut)
        results[index] = fut.result()  # re-raises the task's exception


# -- reading local files ---------------------------------------------------------------------

def read_piece(source: SourceFile, offset: int, length: int) -> memoryview:
    """Read ``length`` bytes at ``offset`` into this thread's reusable buffer."""
    # An mmap, not a bytearray: freed buffers go back to the system when the pipeline's threads
    # end (glibc keeps freed multi-MiB heap blocks, which made a 200-thread put hold 740 MiB).
    view = memoryview(aligned_buffer(length, "piece"))[:length]
    fd = os.open(source.local_path, os.O_RDONLY)
    try:
        got = os.preadv(fd, [view], offset)
    finally:
        os.close(fd)
    if got != length:
        raise SourceChanged(f"{source.local_path!r} shrank while being stored; nothing was published, run the put again")
    return view


# -- put ---------------------------------------------------------------------------------------

class _SourceCheck:
    """Did a piece's bytes change between the hash pass and the upload?

    When the chunk key is cryptographic (slow), the hash pass also records a fast fingerprint
    (``cas.digest.source_check``) per key and the upload compares that: it guards against a local
    file rewritten underneath the put, not an adversary, and saves computing the key twice. With
    no fingerprints (or a fast key) the upload re-computes the key.
    """

    def __init__(self, chunk_hash: ChunkHash, checks: dict | None) -> None:
        self.chunk_hash = chunk_hash
        self.checks = checks if chunk_hash.cryptographic else None

    def record(self, key: bytes, raw) -> None:
        if self.checks is not None:
            self.checks[key] = source_check(raw)

    def matches(self, key: bytes, raw) -> bool:
        fingerprint = self.checks.get(key) if self.checks is not None else None
        if fingerprint is not None:
            return source_check(raw) == fingerprint
        return self.chunk_hash.digest(raw) == key


@dataclass(frozen=True)
class Piece:
    source: SourceFile
    offset: int
    length: int


def _largest(pieces) -> int:
    return max((p.length for p in pieces), default=0)


class EagerSends:
    """A put's chunks that get objects of their own, sent by the hash pass as it reads them.

    Each such piece is asked about (``missing``) the moment it is hashed and, if the store lacks
    it, compressed from the bytes just hashed and created: the file is read once, compression
    starts with the first chunk instead of after the last one is hashed, and what is stored is
    exactly the bytes the key names. The caller must hold its writer lease from before the first
    question until it publishes (or ask again): gc keeps every chunk found or sent meanwhile.
    Only the first piece with a given key is sent; the others are hashed only.
    """

    def __init__(self, backend, *, own_object: Callable[[int], bool], policy: str, level: int,
                 min_saving: float) -> None:
        self.backend = backend
        self.own_object = own_object  # piece length -> sent here (False: left for the caller, e.g. to pack)
        self.policy, self.level, self.min_saving = policy, level, min_saving
        self.sent: dict[bytes, tuple[Piece, int]] = {}  # key -> (piece, stored size)
        self.present: set[bytes] = set()  # keys whose object the store already had
        self._claimed: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def confirmed(self) -> set[bytes]:
        """Keys whose own object exists: found or created by this pass."""
        return self.present | set(self.sent)

    def offer(self, key: bytes, piece: Piece, raw, cpu: threading.Semaphore) -> None:
        if not self.own_object(piece.length):
            return
        with self._lock:
            if key in self._claimed:
                return
            self._claimed.add(key)
        name = chunk_key(key.hex())
        if not self.backend.missing([name]):
            self.present.add(key)
            return
        obj = _encode(raw, cpu, policy=self.policy, level=self.level, min_saving=self.min_saving)
        try:
            self.backend.create(name, obj)
        except FileExistsError:  # content-addressed: another writer stored the same bytes first
            self.present.add(key)
            return
        self.sent[key] = (piece, len(obj))


def hash_pieces(pieces: Iterable[Piece], n_workers: int, progress: Progress = _no_progress, *,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, largest: int | None = None,
                chunk_hash: ChunkHash = DEFAULT_CHUNK_HASH, source_checks: dict | None = None,
                eager: EagerSends | None = None) -> list[bytes]:
    """The chunk key of every piece, in order, hashed in parallel (one read buffer per thread).

    ``largest`` (the longest piece, when the caller knows it) lets ``pieces`` be a lazy iterator,
    consumed once while the threads hash: a content-defined plan cuts as the hashing goes.
    ``source_checks``, if given, is filled with {key: fast fingerprint of the bytes} for
    ``upload_pieces``, when the key hash is slower than the fingerprint (see ``_SourceCheck``).
    ``eager``: also send the pieces it takes as they are hashed (see EagerSends); each thread
    then holds the buffers of an upload.
    """
    check = _SourceCheck(chunk_hash, source_checks)
    longest = _largest(pieces) if largest is None else largest
    n_workers = workers_within(n_workers, longest, 3 if eager else 1, memory_budget)
    cpu = threading.BoundedSemaphore(cpu_threads(n_workers))

    def one(piece: Piece) -> bytes:
        raw = read_piece(piece.source, piece.offset, piece.length)
        d = chunk_hash.digest(raw)
        check.record(d, raw)
        if eager is not None:
            eager.offer(d, piece, raw, cpu)
        progress(piece.length)
        return d

    return run_bounded(one, pieces, n_workers)


def hash_pieces_with_strong(pieces: Sequence[Piece], strong_hash: str, n_workers: int,
                            progress: Progress = _no_progress, *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                            chunk_hash: ChunkHash = DEFAULT_CHUNK_HASH,
                            source_checks: dict | None = None) -> tuple[list[bytes], dict[str, bytes]]:
    """Chunk digests plus a strong digest per file, both from the same read of each byte.

    A strong hash is sequential, so files are hashed in parallel but each file in order.
    Returns (digests in piece order, {local_path: strong digest}).
    """
    by_file: dict[str, list[int]] = {}
    for i, p in enumerate(pieces):
        by_file.setdefault(p.source.local_path, []).append(i)
    digests: list[bytes] = [b""] * len(pieces)
    check = _SourceCheck(chunk_hash, source_checks)

    def one_file(indices: list[int]) -> bytes:
        hasher = new_hasher(strong_hash)
        for i in indices:
            raw = read_piece(pieces[i].source, pieces[i].offset, pieces[i].length)
            digests[i] = chunk_hash.digest(raw)
            check.record(digests[i], raw)
            hasher.update(raw)
            progress(pieces[i].length)
        return hasher.digest()

    strong = run_bounded(one_file, list(by_file.values()), workers_within(n_workers, _largest(pieces), 1, memory_budget))
    return digests, dict(zip(by_file, strong))


def upload_pieces(backend, pieces: Sequence[tuple[bytes, Piece]], *, policy: str, level: int, min_saving: float,
                  n_workers: int, progress: Progress = _no_progress, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                  chunk_hash: ChunkHash = DEFAULT_CHUNK_HASH, source_checks: dict | None = None) -> list[int]:
    """Compress and publish each (digest, piece); returns the stored object sizes.

    Each thread holds a read and an encode buffer, and the backend a copy: threads are capped by
    ``memory_budget``.

    Each piece is re-read and checked right before it is compressed: if the file changed since
    the hash pass, storing it under the old digest would corrupt the store, so we stop instead.
    The check compares the fingerprint the hash pass left in ``source_checks`` when there is one
    (a slow cryptographic key need not be computed twice), else re-computes the key.
    """

    # read, encode, and the backend's copy (an O_DIRECT bounce buffer, a request body): 3 buffers
    n_workers = workers_within(n_workers, _largest(p for _, p in pieces), 3, memory_budget)
    cpu = threading.BoundedSemaphore(cpu_threads(n_workers))
    check = _SourceCheck(chunk_hash, source_checks)

    def one(item: tuple[bytes, Piece]) -> int:
        expected, piece = item
        obj = _encode_piece(expected, piece, check, cpu, policy=policy, level=level, min_saving=min_saving)
        try:
            backend.create(chunk_key(expected.hex()), obj)
        except FileExistsError:
            pass  # content-addressed: another writer stored the same bytes first
        progress(piece.length)
        return len(obj)

    return run_bounded(one, pieces, n_workers)


def _encode_piece(expected: bytes, piece: Piece, check: _SourceCheck, cpu, *, policy: str, level: int,
                  min_saving: float) -> memoryview:
    """Re-read a piece, check it is still the bytes hashed as ``expected``, and encode it into this
    thread's object buffer (valid until the thread's next call)."""
    raw = read_piece(piece.source, piece.offset, piece.length)
    if not check.matches(expected, raw):
        raise SourceChanged(
            f"{piece.source.local_path!r} changed while being stored (bytes at offset {piece.offset}); "
            "nothing was published, run the put again once the file is stable"
        )
    return _encode(raw, cpu, policy=policy, level=level, min_saving=min_saving)


def _encode(raw, cpu, *, policy: str, level: int, min_saving: float) -> memoryview:
    """``raw`` encoded into this thread's object buffer (valid until the thread's next call)."""
    out = aligned_buffer(codec.encoded_capacity(len(raw)), "object")
    with cpu:
        size = codec.encode_into(raw, out, policy=policy, level=level, min_saving=min_saving)
    return memoryview(out)[:size]


def pack_pieces(backend, pieces: Sequence[tuple[bytes, Piece]], *, pack_size: int, policy: str, level: int,
                min_saving: float, n_workers: int, progress: Progress = _no_progress,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, chunk_hash: ChunkHash = DEFAULT_CHUNK_HASH,
                source_checks: dict | None = None) -> tuple[dict[bytes, PackedChunk], list[bytes]]:
    """Encode each (digest, piece) as ``upload_pieces`` would and write the objects, in order, into
    packs of at most ``pack_size`` bytes (cas.packing); returns (where each chunk landed, the ids
    of the packs this call wrote).

    Threads encode ahead, in order, while this thread fills the pack and creates it once full:
    memory is one pack plus a window of small encoded chunks. A pack's key is the hash of its
    bytes and encoding is deterministic, so a put run again after it was killed builds the same
    packs: each is asked about before it is sent, and one that exists is not sent again.
    """
    n_workers = workers_within(n_workers, _largest(p for _, p in pieces), 3, memory_budget)
    cpu = threading.BoundedSemaphore(cpu_threads(n_workers))
    check = _SourceCheck(chunk_hash, source_checks)
    builder = PackBuilder(pack_size, chunk_hash.digest)
    placed: dict[bytes, PackedChunk] = {}
    written: list[bytes] = []

    def encode(item: tuple[bytes, Piece]) -> bytes:
        expected, piece = item
        # a copy: the ordered window may hold it after this thread reused its buffer
        return bytes(_encode_piece(expected, piece, check, cpu, policy=policy, level=level, min_saving=min_saving))

    def publish(done) -> None:
        if done is None:
            return
        key = pack_key(done.id.hex())
        if backend.missing([key]):
            try:
                backend.create(key, done.data)
                written.append(done.id)
            except FileExistsError:
                pass  # the same chunk objects in the same order: content-addressed like a chunk
        placed.update(done.members)

    for (d, piece), obj in zip(pieces, map_ordered(encode, pieces, n_workers)):
        publish(builder.add(d, obj))
        progress(piece.length)
    publish(builder.finish())
    return placed, written


# -- get ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)  # slots: a version may list a million of these
class ChunkJob:
    """One distinct chunk of a version and every place it goes in the staged files."""

    digest: bytes
    length: int
    targets: tuple[tuple[str, int], ...]  # (staged file path, offset)
    label: str  # "model@version file path" for messages
    # its version's pack-table entry (the manifest's own object: no location per job is built
    # until it is read); None: its own object, chunks/<digest>
    packed: PackedChunk | None = None


SeedLookup = Callable[[bytes, int], "bytes | None"]


def fetch_chunk(backend, digest: bytes, length: int, label: str, cpu: threading.Semaphore,
                chunk_hash: ChunkHash = DEFAULT_CHUNK_HASH, where: ChunkLocation | None = None,
                first_read=None) -> memoryview:
    """Read, decode and verify one chunk; retry the read once before calling it corrupt.

    A chunk in a pack (``where``) is read from its range (``first_read``: its bytes, when a
    coalesced read already fetched them); if the pack is missing or the chunk in it is damaged,
    its own object ``chunks/<digest>`` is used when one exists (a repair writes those).
    Returns a view of this thread's page-aligned chunk buffer, valid until its next fetch.
    ``cpu`` is held while decoding and hashing (see ``cpu_threads``).
    """
    hex_digest = digest.hex()
    pack_problem = ""
    if where is not None and where.in_pack:
        out = aligned_buffer(length, "chunk")
        for attempt in range(2):
            try:
                obj = first_read if attempt == 0 and first_read is not None else \
                    backend.read(where.key, where.offset, where.length)
            except FileNotFoundError:
                pack_problem = f"its pack {where.key} is missing"
                break
            data, problem = _decoded(obj, out, digest, length, chunk_hash, cpu)
            if data is not None:
                return data
            pack_problem = f"in pack {where.key}: {problem}"
    try:
        return _fetch_individual(backend, digest, length, label, cpu, chunk_hash)
    except MissingChunk:
        if not pack_problem:
            raise
        if pack_problem.startswith("its pack"):
            raise MissingChunk(hex_digest, f"{label} ({pack_problem}, and it has no object of its own)") from None
        raise CorruptChunk(f"chunk {hex_digest} of {label} is corrupt ({pack_problem}) and has no object of its own; "
                           "run `cas verify` and `cas repair`", digest=hex_digest) from None
    except CorruptChunk as exc:
        if not pack_problem:
            raise
        raise CorruptChunk(f"{exc} ({pack_problem})", digest=hex_digest) from None


def _decoded(obj, out, digest: bytes, length: int, chunk_hash: ChunkHash,
             cpu: threading.Semaphore) -> tuple[memoryview | None, str]:
    """A stored object decoded into ``out`` and checked against ``digest``: (its bytes, "") or
    (None, what is wrong with it)."""
    with cpu:
        try:
            data = codec.decode_into(obj, out, expected_length=length, name=f"chunk {digest.hex()}")
        except CorruptChunk as exc:
            return None, str(exc)
        if chunk_hash.digest(data) == digest:
            return data, ""
    return None, "its bytes do not match its digest"


def _fetch_individual(backend, digest: bytes, length: int, label: str, cpu: threading.Semaphore,
                      chunk_hash: ChunkHash) -> memoryview:
    hex_digest = digest.hex()
    key = chunk_key(hex_digest)
    obj_buffer = aligned_buffer(codec.encoded_capacity(length), "object")
    out = aligned_buffer(length, "chunk")
    problem = ""
    for _attempt in range(2):
        try:
            obj = read_into(backend, key, obj_buffer)
        except FileNotFoundError:
            raise MissingChunk(hex_digest, label) from None
        except BufferError:
            problem = f"its object is longer than any encoding of {length} bytes"
            continue
        data, problem = _decoded(obj, out, digest, length, chunk_hash, cpu)
        if data is not None:
            return data
    raise CorruptChunk(f"chunk {hex_digest} of {label} is corrupt ({problem}); run `cas verify` and `cas repair`",
                       digest=hex_digest)


def download_chunks(backend, jobs: Sequence[ChunkJob], *, n_workers: int, seed: SeedLookup | None = None,
                    progress: Progress = _no_progress, direct: bool = True,
                    memory_budget: int = DEFAULT_MEMORY_BUDGET, chunk_hash: ChunkHash = DEFAULT_CHUNK_HASH) -> tuple[int, int]:
    """Fill every target of every job; returns (bytes fetched from the store, bytes reused locally).

    Each thread holds an object and a chunk buffer (and a seed read): threads are capped by ``memory_budget``.

    ``direct``: write aligned chunks with O_DIRECT (see cas.directio) while the file system allows it.
    """
    counts = [0, 0]
    lock = threading.Lock()
    use_direct = [direct]
    runs = coalesce(jobs)
    largest = max(max((j.length for j in jobs), default=0), max((run_bytes(r) for r in runs), default=0))
    n_workers = workers_within(n_workers, largest, 3 if seed else 2, memory_budget)
    cpu = threading.BoundedSemaphore(cpu_threads(n_workers))

    def place(job: ChunkJob, data, reused: bool) -> None:
        for path, offset in job.targets:
            if not write_at(path, data, offset, direct=use_direct[0]):
                use_direct[0] = False
        with lock:
            counts[1 if reused else 0] += job.length
        progress(job.length * len(job.targets))

    def one(run: list[ChunkJob]) -> None:
        # One member at a time (a run of small compressible chunks can be far larger raw than its
        # 8 MiB stored); the run's range is read once, at the first member no local copy has.
        block, unread = None, True
        for job in run:
            data = seed(job.digest, job.length) if seed else None
            if data is not None:
                place(job, data, True)
                continue
            if unread:  # a member that fails in it is read again on its own, with fallback
                block, unread = read_run(backend, run), False
            where = location(job.digest, job.packed) if job.packed else None
            place(job, fetch_chunk(backend, job.digest, job.length, job.label, cpu, chunk_hash, where,
                                   run_member(block, run, job)), False)

    run_bounded(one, runs, n_workers)
    return counts[0], counts[1]


# One read covers adjacent chunks of a pack up to this many bytes: far fewer requests for a
# version of many small chunks, and a bounded buffer per thread.
MAX_RUN_BYTES = 8 << 20


def run_bytes(run: list[ChunkJob]) -> int:
    """Bytes of the one range a run of adjacent packed chunks is read with (0 for a chunk alone)."""
    if len(run) == 1:
        return 0
    return run[-1].packed.offset + run[-1].packed.length - run[0].packed.offset


def read_run(backend, run: list[ChunkJob]) -> memoryview | None:
    """The bytes of a run of adjacent packed chunks (``coalesce``) in one ranged read; None for a
    chunk alone or a pack that is gone (each member is then read, and judged, on its own)."""
    if len(run) < 2:
        return None
    first = run[0].packed
    try:
        return memoryview(backend.read(location(run[0].digest, first).key, first.offset, run_bytes(run)))
    except FileNotFoundError:
        return None


def run_member(block: memoryview | None, run: list[ChunkJob], job: ChunkJob) -> memoryview | None:
    """``job``'s stored bytes within its run's ``read_run`` block (short if the pack ends early)."""
    if block is None:
        return None
    start = job.packed.offset - run[0].packed.offset
    return block[start:start + job.packed.length]


def coalesce(jobs: Sequence[ChunkJob], max_run_bytes: int = MAX_RUN_BYTES) -> list[list[ChunkJob]]:
    """Jobs grouped for reading: each packed chunk joins the run of the chunk that ends where it
    starts in the same pack (while the run stays within ``max_run_bytes``); others stay alone."""
    alone: list[list[ChunkJob]] = []
    by_pack: dict[bytes, list[ChunkJob]] = {}
    for j in jobs:
        if j.packed is not None:
            by_pack.setdefault(j.packed.pack, []).append(j)
        else:
            alone.append([j])
    runs: list[list[ChunkJob]] = []
    for members in by_pack.values():
        members.sort(key=lambda j: j.packed.offset)
        run: list[ChunkJob] = []
        for j in members:
            if run and (run[-1].packed.offset + run[-1].packed.length != j.packed.offset
                        or j.packed.offset + j.packed.length - run[0].packed.offset > max_run_bytes):
                runs.append(run)
                run = []
            run.append(j)
        runs.append(run)
    return runs + alone
