"""A/B two versions of cas on put and get, in alternating fresh processes.

    git worktree add /tmp/cas-before <commit>
    .venv/bin/python bench/ab.py --a /tmp/cas-before --b . --size 1GiB --rounds 4
    .venv/bin/python bench/ab.py --a /tmp/cas-before --b . --size 256MiB --rounds 1 \
        --data f32,bf16,f16,random,text,/data/model.h5

Each round runs, for A then B, a put of the same file into an empty local store, then a get of
that version into a new file, each in its own interpreter whose ``cas`` comes from the
given checkout (PYTHONPATH), so neither side inherits the other's page cache of its own store or
its warm imports. Each run reports its wall time and its process's CPU seconds (all threads); the
summary gives the B/A ratio of both per round and their medians. The machine is shared and noisy:
compare round by round, and trust the CPU ratio more than the wall one. Each side's stored/raw (the
bytes of its chunk objects over the file's) is printed too. ``--data`` lists data kinds
(``workload.DATA_KINDS``, generated at ``--size``) or existing files (default: f32 weights).
``--direct-writes/--no-direct-writes`` is passed to both sides' Store.open for get. ``--cold``
drops the source file from the page cache before each put, so the put reads it from disk.

``--a-chunk-hash/--b-chunk-hash`` create that side's store with those chunk keys first, so one
checkout can be compared with itself, e.g. xxh3-128 against blake3-256 keys:

    .venv/bin/python bench/ab.py --a . --b . --b-chunk-hash blake3 --size 1GiB --rounds 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workload import DATA_KINDS, parse_size, tree_bytes, write_data  # noqa: E402

CHILD = r"""
import os, resource, sys, time
from cas import Store
op, root, path, chunk_hash, cold = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5], sys.argv[6] == "1"
options = {} if sys.argv[4] == "default" else {"direct_writes": sys.argv[4] == "1"}
if op == "put" and chunk_hash != "default":
    Store.create(root, chunk_hash=chunk_hash).close()
store = Store.open(root, cache_dir=False, **options)
os.sync()
if cold and op == "put":  # the source's pages leave the page cache: the put reads it from disk
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0, c0 = time.perf_counter(), cpu()
if op == "put":
    store.put(path, "m")
else:
    store.get("m@1", path)
print(f"{time.perf_counter() - t0:.3f} {cpu() - c0:.3f}")
"""


def run(checkout: str, op: str, root: str, path: str, direct: str, chunk_hash: str | None = None, *,
        cold: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one put or get."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, op, root, path, direct, chunk_hash or "default", "1" if cold else "0"],
                         env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall, cpu = out.stdout.split()[-2:]
    return float(wall), float(cpu)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="checkout whose cas/ is side A")
    ap.add_argument("--b", required=True, help="checkout whose cas/ is side B")
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--data", default="f32", help="comma-separated data kinds or files (default f32)")
    ap.add_argument("--direct-writes", dest="direct", action="store_true", default=None)
    ap.add_argument("--no-direct-writes", dest="direct", action="store_false")
    ap.add_argument("--a-chunk-hash", help="create side A's store with these chunk keys (default: the store default)")
    ap.add_argument("--b-chunk-hash", help="create side B's store with these chunk keys")
    ap.add_argument("--tmp", default=None, help="parent directory for data and stores (deleted afterwards)")
    ap.add_argument("--cold", action="store_true", help="drop the source from the page cache before each put, "
                    "as for a model file that was not just written or read (POSIX_FADV_DONTNEED)")
    opts = ap.parse_args(argv)
    direct = "default" if opts.direct is None else ("1" if opts.direct else "0")
    work = tempfile.mkdtemp(prefix="cas-ab-", dir=opts.tmp)
    try:
        for item in opts.data.split(","):
            if item in DATA_KINDS:
                path = write_data(item, os.path.join(work, f"data.{item}"), parse_size(opts.size))
            elif os.path.isfile(item):
                path = item
            else:
                raise SystemExit(f"--data: {item!r} is neither a data kind ({', '.join(DATA_KINDS)}) nor a file")
            compare(opts, path, item, work, direct)
            if path.startswith(work):
                os.unlink(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def compare(opts, path: str, label: str, work: str, direct: str) -> None:
    times = {(side, op): [] for side in "AB" for op in ("put", "get")}
    stored = {}
    for _ in range(opts.rounds):
        for side, checkout, chunk_hash in (("A", opts.a, opts.a_chunk_hash), ("B", opts.b, opts.b_chunk_hash)):
            root, dest = os.path.join(work, f"store-{side}"), os.path.join(work, f"got-{side}")
            shutil.rmtree(root, ignore_errors=True)
            times[side, "put"].append(run(checkout, "put", root, path, direct, chunk_hash, cold=opts.cold))
            stored[side] = tree_bytes(os.path.join(root, "chunks")) / os.path.getsize(path)
            times[side, "get"].append(run(checkout, "get", root, dest, direct))
            os.unlink(dest)
    print(f"{label} ({os.path.getsize(path)} bytes): stored/raw A {stored['A']:.4f}, B {stored['B']:.4f} "
          f"(B/A {stored['B'] / stored['A']:.4f})", flush=True)
    for op in ("put", "get"):
        for side in "AB":
            print(f"  {op} {side}: " + " ".join(f"{t:.2f}" for t, _ in times[side, op]) + " s, CPU "
                  + " ".join(f"{c:.2f}" for _, c in times[side, op]) + " s")
        for i, what in ((0, "time"), (1, "CPU")):
            ratios = [b[i] / a[i] for a, b in zip(times["A", op], times["B", op])]
            print(f"  {op} B/A {what} per round: " + " ".join(f"{r:.3f}" for r in ratios)
                  + f"  (median {statistics.median(ratios):.3f})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
