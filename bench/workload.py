"""The benchmarks' workload: sizes from the environment, generated weights, stores and files.

Sizes and modes come from the environment so the same benchmarks serve CI and the timed run:

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

import os
import shutil

# numpy (only used to generate data) would start an OpenBLAS thread per core whose spin-waits
# showed up in perf profiles of put (2% of samples) and steal CPU from whatever is measured.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from cas import Store, codec
from cas.chunking import DEFAULT_CHUNK_SIZE, Chunker
from cas.digest import chunk_hash
from cas.layout import TMP
from cas.localfs import scan_source
from cas.planning import plan
from cas.sizes import MIB, format_size, parse_size  # noqa: F401  (parse_size, format_size: for the benchmarks)

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


DATA_KINDS = ("f32", "bf16", "f16", "random", "text")


def write_data(kind: str, path: str, size: int, *, seed: int = 0) -> str:
    """``size`` bytes of one kind of data at ``path`` (atomically), the same on every run:
    f32 (``write_weights``), bf16 (their top halves, as bfloat16 truncation), f16 (N(0, 0.02)
    rounded to float16), random (incompressible) or text (JSON lines of decimals, a config or log)."""
    if kind == "f32":
        return write_weights(path, size, seed=seed)
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; one of {', '.join(DATA_KINDS)}")
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        for block, offset in enumerate(range(0, size, GEN_BLOCK)):
            n = min(GEN_BLOCK, size - offset)
            rng = np.random.default_rng([seed, block])
            if kind == "random":
                data = rng.bytes(n)
            elif kind == "text":
                values = rng.standard_normal(n // 30 + 64) * WEIGHT_STD  # lines are 31-33 bytes
                data = "".join(f'{{"layer": {i % 97}, "value": {v:.6f}}}\n' for i, v in enumerate(values)).encode()
            else:
                values = rng.standard_normal((n + 1) // 2, dtype=np.float32) * WEIGHT_STD
                halves = values.astype(np.float16) if kind == "f16" else (values.view(np.uint32) >> 16).astype(np.uint16)
                data = memoryview(halves).cast("B")
            f.write(data[:n])
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
