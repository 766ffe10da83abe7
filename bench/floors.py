"""The machine's limits for the benchmarks: the put/get code path minus I/O (compress- and
decode-only baselines), minus compression (the I/O-only floors), CPU accounting and peak RSS in a
fresh process."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from cas import codec
from cas.backends import LocalBackend
from cas.backends.base import read_into
from cas.chunking import Chunker
from cas.directio import aligned_buffer, write_at
from cas.layout import chunk_key
from cas.localfs import scan_source
from cas.planning import plan
from cas.transfer import DEFAULT_MEMORY_BUDGET, cpu_threads, read_piece, run_bounded, workers_within

from workload import BENCH_CHUNK_HASH, CHUNK_SIZE, LEVEL, MIN_SAVING, MODEL

# -- the machine-limit baselines: the put/get code path minus I/O and hashing ---------------------

def compress_all(chunks, n_workers: int) -> list[int]:
    """cas.codec.encode_into every in-memory chunk; the stored sizes.

    The fastest compress-only we know, with the default codec policy (byte planes for these
    weights): the codec writes into a reused buffer per thread (what put does), which beats
    encoding into fresh memory per chunk (``compress_all_oneshot``), in as
    many threads as a put with ``n_workers`` lets compress at once (``cas.transfer.cpu_threads``:
    one per core, which also beats more threads than cores).
    """

    def one(chunk) -> int:
        out = aligned_buffer(codec.encoded_capacity(len(chunk)), "object")
        return codec.encode_into(chunk, out, level=LEVEL, min_saving=MIN_SAVING)

    return run_bounded(one, chunks, cpu_threads(n_workers))


def compress_all_oneshot(chunks, n_workers: int) -> list[int]:
    """cas.codec.encode (the same objects, built in a fresh buffer per chunk) of every chunk, for reference."""
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
    """cas.codec.decode (into a fresh buffer per chunk) of every object, for reference."""

    def one(item) -> int:
        obj, length = item
        return len(codec.decode(obj, expected_length=length))

    return run_bounded(one, encoded, cpu_threads(n_workers))


# -- the I/O-only floors: what put and get must do besides compressing/decompressing ----------------

def put_io_only(weights: str, encoded, root: str, n_workers: int) -> None:
    """A put's I/O with the compression taken out, into an empty local store at ``root``.

    Per chunk, in the threads put's hash pass runs: read it, key it, ask whether the store has
    it, copy its ready-made stored object into the page-aligned buffer (where put's compressor
    writes it) and create it (O_DIRECT, link into place); then the syncfs barrier.
    """
    backend = LocalBackend(root)
    _kind, sources, _dirs = scan_source(weights)
    pieces = plan(sources, Chunker("fixed", CHUNK_SIZE)).pieces()

    def one(i: int) -> None:
        key = chunk_key(BENCH_CHUNK_HASH.digest(read_piece(pieces[i].source, pieces[i].offset, pieces[i].length)).hex())
        if backend.missing([key]):
            obj = encoded[i][0]
            out = aligned_buffer(len(obj), "object")
            out[: len(obj)] = obj
            backend.create(key, memoryview(out)[: len(obj)])

    run_bounded(one, range(len(pieces)), workers_within(n_workers, CHUNK_SIZE, 3, DEFAULT_MEMORY_BUDGET))
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

op, root, src, dst, ref, chunker = sys.argv[1:7]
store = Store(LocalBackend(root), cache_dir=False)
ready = vm_hwm()
t0 = time.perf_counter()
if op == "put":
    store.put(src, ref.split("@")[0], chunker=chunker)
else:
    store.get(ref, dst)
seconds = time.perf_counter() - t0
print(json.dumps({"op": op, "peak_rss": vm_hwm(), "ready_rss": ready, "seconds": seconds}))
"""


def measure_child(op: str, root: str, src: str = "", dst: str = "", ref: str = f"{MODEL}@1", *,
                  chunker: str = "auto") -> dict:
    """Run one put (cut with ``chunker``) or get in a fresh interpreter: its peak RSS (VmHWM), peak
    RSS after imports, wall time."""
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, op, root, src, dst, ref, chunker],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{op} child failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
