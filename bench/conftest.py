"""Shared fixtures and helpers for the cas benchmarks.

Sizes and modes come from the environment so the same file serves CI and the timed run:

    CAS_BENCH_SIZE       size of the weights file the throughput benchmarks use (default 40MiB:
                         ten 4 MiB chunks, so "10% of the chunks" is exactly one chunk). A byte
                         count or a size as ``cas.sizes.parse_size`` reads it (512KiB, 40MiB, 1GiB).
    CAS_BENCH_RSS_SIZES  comma-separated sizes for the peak-RSS checks (default: SIZE and 2 x SIZE).
    CAS_BENCH_ROUNDS     timed rounds per benchmark (default 3; ignored when timing is disabled).
    CAS_BENCH_TMP        parent directory for stores, copies and data (default: the system temp
                         dir). Everything the run creates there is deleted at the end.
    CAS_BENCH_DATA_DIR   if set, generated weights files are kept there and reused by later runs
                         (bench/report.py uses this across its passes, then deletes it).
    CAS_BENCH_CHUNK_HASH if set (xxh3-128 or blake3-256), the stores the benchmarks create use those
                         chunk keys (bench/report.py --chunk-hash).

The data: float32 "weights" drawn from N(0, 0.02), the usual initialisation scale of transformer
layers and close to the spread of trained dense layers. Their mantissas are random, so zstd
level 3 saves only ~7.5% on them (stored ~92.5% of raw): compression runs on every chunk, the
codec keeps the zstd frame (it saves more than the 2% threshold), and decompression is not a
plain copy. The file is generated in 16 MiB blocks, each from its own seeded generator, so it is
identical on every run and machine.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

# numpy (only used to generate data) would start an OpenBLAS thread per core whose spin-waits
# showed up in perf profiles of put (2% of samples) and steal CPU from whatever is measured.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import zstandard

from cas import Store, codec
from cas.backends import LocalBackend
from cas.chunking import DEFAULT_CHUNK_SIZE, Chunker
from cas.backends.base import read_into
from cas.digest import chunk_hash, digest
from cas.directio import aligned_buffer, write_at
from cas.layout import TMP, chunk_key
from cas.sizes import MIB, format_size, parse_size  # noqa: F401  (format_size: for the benchmarks)
from cas.localfs import scan_source
from cas.planning import plan
from cas.transfer import cpu_threads, hash_pieces, read_piece, run_bounded

DEFAULT_BENCH_SIZE = 40 * MIB
WEIGHT_STD = 0.02
CHANGED_STD = 1e-3  # a changed chunk: its weights plus N(0, 1e-3), as after fine-tuning a layer
CHANGED_FRACTION = 0.10
GEN_BLOCK = 16 * MIB
MODEL = "bench-model"
LEVEL = codec.DEFAULT_LEVEL
MIN_SAVING = codec.DEFAULT_MIN_SAVING
CHUNK_SIZE = DEFAULT_CHUNK_SIZE

BENCH_CHUNK_HASH = chunk_hash(os.environ.get("CAS_BENCH_CHUNK_HASH") or "xxh3-128")

# Keep the benchmarks away from the user's real store and cache.
os.environ.pop("CAS_STORE", None)


# -- sizes -------------------------------------------------------------------------------------

def bench_size() -> int:
    return parse_size(os.environ.get("CAS_BENCH_SIZE") or str(DEFAULT_BENCH_SIZE))


def rss_sizes() -> list[int]:
    text = os.environ.get("CAS_BENCH_RSS_SIZES")
    if text:
        return [parse_size(t) for t in text.split(",") if t.strip()]
    return [bench_size(), 2 * bench_size()]


def bench_rounds() -> int:
    return int(os.environ.get("CAS_BENCH_ROUNDS") or 3)


# -- data ---------------------------------------------------------------------------------------

def write_weights(path: str, size: int, *, seed: int = 0) -> str:
    """Write ``size`` bytes of N(0, WEIGHT_STD) float32 to ``path`` (atomically); returns path."""
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        for block, offset in enumerate(range(0, size, GEN_BLOCK)):
            n = min(GEN_BLOCK, size - offset)
            values = np.random.default_rng([seed, block]).standard_normal((n + 3) // 4, dtype=np.float32)
            values *= WEIGHT_STD
            f.write(memoryview(values).cast("B")[:n])
    os.replace(tmp, path)
    return path


def changed_chunk_indices(size: int, *, chunk_size: int = CHUNK_SIZE, fraction: float = CHANGED_FRACTION) -> list[int]:
    """Evenly spread indices of round(fraction x chunks) chunks (at least one)."""
    n_chunks = len(range(0, size, chunk_size))
    n_changed = max(1, round(n_chunks * fraction))
    return [i * n_chunks // n_changed for i in range(n_changed)]


def write_changed_copy(src: str, dst: str, *, chunk_size: int = CHUNK_SIZE, fraction: float = CHANGED_FRACTION,
                       seed: int = 1) -> list[int]:
    """Copy ``src`` to ``dst`` with ``fraction`` of its chunks perturbed; returns the changed indices."""
    size = os.path.getsize(src)
    indices = changed_chunk_indices(size, chunk_size=chunk_size, fraction=fraction)
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        for i in indices:
            offset = i * chunk_size
            length = min(chunk_size, size - offset) // 4 * 4
            f.seek(offset)
            values = np.frombuffer(bytearray(f.read(length)), dtype=np.float32)
            values += np.random.default_rng([seed, i]).normal(0.0, CHANGED_STD, values.size).astype(np.float32)
            f.seek(offset)
            f.write(values.tobytes())
    return indices


def read_chunks(path: str, chunk_size: int = CHUNK_SIZE) -> list[bytes]:
    """The file's fixed-size chunks (cut by cas.planning, as put cuts them), in memory (for the no-I/O baselines)."""
    _kind, sources, _dirs = scan_source(path)
    with open(path, "rb") as f:
        out = []
        for piece in plan(sources, Chunker("fixed", chunk_size)):
            f.seek(piece.offset)
            out.append(f.read(piece.length))
        return out


def files_equal(a: str, b: str, block: int = 16 * MIB) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return False
            if not x:
                return True


def tree_bytes(root: str) -> int:
    """Bytes of every object under a local store root (the backend's tmp/ staging excluded)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root and TMP in dirnames:
            dirnames.remove(TMP)
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in filenames)
    return total


def open_store(root: str) -> Store:
    """A local store with the defaults a user gets (durable, backend-sized workers) and no seed cache,
    so every get really reads the store; a new one gets the chunk keys of $CAS_BENCH_CHUNK_HASH."""
    return Store.open(root, cache_dir=False, chunk_hash=os.environ.get("CAS_BENCH_CHUNK_HASH") or None)


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


# -- the machine-limit baselines: the put/get code path minus I/O and hashing ---------------------

def compress_all(chunks, n_workers: int) -> list[int]:
    """cas.codec.encode_into every in-memory chunk; the stored sizes.

    The fastest compress-only we know: zstd streams into a reused buffer per thread (what put
    does), which beats one-shot ``compress`` into fresh memory (``compress_all_oneshot``), in as
    many threads as a put with ``n_workers`` lets compress at once (``cas.transfer.cpu_threads``:
    one per core, which also beats more threads than cores).
    """

    def one(chunk) -> int:
        out = aligned_buffer(codec.encoded_capacity(len(chunk)), "object")
        return codec.encode_into(chunk, out, level=LEVEL, min_saving=MIN_SAVING)

    return run_bounded(one, chunks, cpu_threads(n_workers))


def compress_all_oneshot(chunks, n_workers: int) -> list[int]:
    """cas.codec.encode (one-shot zstd compress into a fresh bytes) of every chunk, for reference."""
    return run_bounded(lambda c: len(codec.encode(c, level=LEVEL, min_saving=MIN_SAVING)), chunks,
                       cpu_threads(n_workers))


def decode_all(encoded, n_workers: int) -> list[int]:
    """cas.codec.decode_into a reused buffer per thread for every (object, raw length); the raw lengths.

    In as many threads as a get with ``n_workers`` lets decode at once (see ``compress_all``).
    """

    def one(item) -> int:
        obj, length = item
        return len(codec.decode_into(obj, aligned_buffer(length, "chunk"), expected_length=length))

    return run_bounded(one, encoded, cpu_threads(n_workers))


def decode_all_oneshot(encoded, n_workers: int) -> list[int]:
    """One-shot zstd decompress into a fresh bytes of every object's payload, for reference."""

    def one(item) -> int:
        obj, length = item
        return len(zstandard.ZstdDecompressor().decompress(memoryview(obj)[codec.HEADER_SIZE:], max_output_size=length))

    return run_bounded(one, encoded, cpu_threads(n_workers))


# -- the I/O-only floors: what put and get must do besides compressing/decompressing ----------------

def put_io_only(weights: str, encoded, root: str, n_workers: int) -> None:
    """A put's I/O with the compression taken out, into an empty local store at ``root``.

    The hash pass (read + key every chunk), then per chunk: read it again, xxh3 it, copy its
    ready-made stored object into the page-aligned buffer (where put's compressor writes it) and
    create it (O_DIRECT, link into place), in ``n_workers`` threads; then the syncfs barrier.
    """
    backend = LocalBackend(root)
    _kind, sources, _dirs = scan_source(weights)
    pieces = plan(sources, Chunker("fixed", CHUNK_SIZE)).pieces()
    digests = hash_pieces(pieces, n_workers, chunk_hash=BENCH_CHUNK_HASH)

    def one(i: int) -> None:
        digest(read_piece(pieces[i].source, pieces[i].offset, pieces[i].length))
        obj = encoded[i][0]
        out = aligned_buffer(len(obj), "object")
        out[: len(obj)] = obj
        backend.create(chunk_key(digests[i].hex()), memoryview(out)[: len(obj)])

    run_bounded(one, range(len(pieces)), n_workers)
    backend.flush()


def get_io_only(root: str, chunks, dest: str, n_workers: int, *, direct: bool) -> None:
    """A get's I/O with the decompression taken out: read every stored object of ``root`` (put
    there from ``chunks``) into a reused buffer, copy the chunk's raw bytes into the page-aligned
    buffer (where get's decoder writes them) and write them at their offset of a new sparse file,
    O_DIRECT or through the page cache; then rename it into place."""
    backend = LocalBackend(root)
    staged = dest + ".staged"
    with open(staged, "wb") as f:
        f.truncate(sum(map(len, chunks)))

    def one(i: int) -> None:
        raw = chunks[i]
        key = chunk_key(BENCH_CHUNK_HASH.digest(raw).hex())  # what get's check of each chunk costs
        read_into(backend, key, aligned_buffer(codec.encoded_capacity(len(raw)), "object"))
        out = aligned_buffer(len(raw), "chunk")
        out[: len(raw)] = raw
        write_at(staged, memoryview(out)[: len(raw)], i * CHUNK_SIZE, direct=direct)

    run_bounded(one, range(len(chunks)), n_workers)
    os.replace(staged, dest)


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def recording_cpu(fn, sink: list):
    """``fn`` wrapped to append the CPU-seconds each call used to ``sink``."""

    def wrapped(*args, **kwargs):
        start = cpu_seconds()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(cpu_seconds() - start)

    return wrapped


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


# -- peak RSS in a fresh process -----------------------------------------------------------------

_RSS_CHILD = r"""
import json, sys, time
from cas import Store
from cas.backends import LocalBackend

def vm_hwm():
    # Peak RSS of this process's own address space. Not ru_maxrss: Linux carries the parent's
    # peak across fork/vfork + exec into it, so a child of a big pytest process would report that.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

op, root, src, dst, ref = sys.argv[1:6]
store = Store(LocalBackend(root), cache_dir=False)
ready = vm_hwm()
t0 = time.perf_counter()
if op == "put":
    store.put(src, ref.split("@")[0])
else:
    store.get(ref, dst)
seconds = time.perf_counter() - t0
print(json.dumps({"op": op, "peak_rss": vm_hwm(), "ready_rss": ready, "seconds": seconds}))
"""


def measure_child(op: str, root: str, src: str = "", dst: str = "", ref: str = f"{MODEL}@1") -> dict:
    """Run one put or get in a fresh interpreter: its peak RSS (VmHWM), peak RSS after imports, wall time."""
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, op, root, src, dst, ref],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{op} child failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def bench_tmp():
    path = tempfile.mkdtemp(prefix="cas-bench-", dir=os.environ.get("CAS_BENCH_TMP"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def weights_path(bench_tmp):
    """weights_path(size, seed=0) -> path of a generated weights file (made once, cached)."""
    data_dir = os.environ.get("CAS_BENCH_DATA_DIR") or os.path.join(bench_tmp, "data")
    os.makedirs(data_dir, exist_ok=True)

    def get(size: int, seed: int = 0) -> str:
        path = os.path.join(data_dir, f"weights-{size}-s{seed}.f32")
        return path if os.path.exists(path) else write_weights(path, size, seed=seed)

    return get


@pytest.fixture(scope="session")
def size() -> int:
    return bench_size()


@pytest.fixture(scope="session")
def weights(weights_path, size) -> str:
    return weights_path(size)


@pytest.fixture(scope="session")
def weights_v2(weights, bench_tmp) -> tuple[str, list[int]]:
    """(path, changed chunk indices): the weights with 10% of their chunks fine-tuned."""
    path = os.path.join(bench_tmp, "weights-v2.f32")
    return path, write_changed_copy(weights, path)


@pytest.fixture(scope="session")
def chunks(weights) -> list[bytes]:
    return read_chunks(weights)


@pytest.fixture(scope="session")
def encoded(chunks) -> list[tuple[bytes, int]]:
    """(stored object, raw length) of every chunk, exactly as put stores them."""
    out = bytearray(codec.encoded_capacity(max(map(len, chunks), default=0)))
    return [(bytes(out[:codec.encode_into(c, out, level=LEVEL, min_saving=MIN_SAVING)]), len(c)) for c in chunks]


@pytest.fixture(scope="session")
def n_workers(bench_tmp) -> int:
    """The thread count a Store on the local backend uses by default; the baselines use the same."""
    return open_store(os.path.join(bench_tmp, "probe")).n_workers


@pytest.fixture(scope="module")
def stored(weights, bench_tmp) -> str:
    """Root of a local store that holds the weights as MODEL@1."""
    root = os.path.join(bench_tmp, "stored")
    open_store(root).put(weights, MODEL)
    yield root
    remove(root)
