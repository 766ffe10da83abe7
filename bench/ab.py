"""A/B two versions of cas on put and get, in alternating fresh processes.

    git worktree add /tmp/cas-before <commit>
    .venv/bin/python bench/ab.py --a /tmp/cas-before --b . --size 1GiB --rounds 4

Each round runs, for A then B, a put of the same weights file into an empty local store, then a
get of that version into a new file, each in its own interpreter whose ``cas`` comes from the
given checkout (PYTHONPATH), so neither side inherits the other's page cache of its own store or
its warm imports. Each run reports its wall time and its process's CPU seconds (all threads); the
summary gives the B/A ratio of both per round and their medians. The machine is shared and noisy:
compare round by round, and trust the CPU ratio more than the wall one.
``--direct-writes/--no-direct-writes`` is passed to both sides' Store.open for get.

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

from workload import parse_size, write_weights  # noqa: E402

CHILD = r"""
import os, resource, sys, time
from cas import Store
op, root, path, chunk_hash = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
options = {} if sys.argv[4] == "default" else {"direct_writes": sys.argv[4] == "1"}
if op == "put" and chunk_hash != "default":
    Store.create(root, chunk_hash=chunk_hash).close()
store = Store.open(root, cache_dir=False, **options)
os.sync()
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


def run(checkout: str, op: str, root: str, path: str, direct: str, chunk_hash: str | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one put or get."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, op, root, path, direct, chunk_hash or "default"], env=env, check=True,
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall, cpu = out.stdout.split()[-2:]
    return float(wall), float(cpu)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="checkout whose cas/ is side A")
    ap.add_argument("--b", required=True, help="checkout whose cas/ is side B")
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--direct-writes", dest="direct", action="store_true", default=None)
    ap.add_argument("--no-direct-writes", dest="direct", action="store_false")
    ap.add_argument("--a-chunk-hash", help="create side A's store with these chunk keys (default: the store default)")
    ap.add_argument("--b-chunk-hash", help="create side B's store with these chunk keys")
    ap.add_argument("--tmp", default=None, help="parent directory for data and stores (deleted afterwards)")
    opts = ap.parse_args(argv)
    direct = "default" if opts.direct is None else ("1" if opts.direct else "0")
    work = tempfile.mkdtemp(prefix="cas-ab-", dir=opts.tmp)
    try:
        weights = write_weights(os.path.join(work, "weights.f32"), parse_size(opts.size))
        times = {(side, op): [] for side in "AB" for op in ("put", "get")}
        for _ in range(opts.rounds):
            for side, checkout, chunk_hash in (("A", opts.a, opts.a_chunk_hash), ("B", opts.b, opts.b_chunk_hash)):
                root, dest = os.path.join(work, f"store-{side}"), os.path.join(work, f"got-{side}")
                shutil.rmtree(root, ignore_errors=True)
                times[side, "put"].append(run(checkout, "put", root, weights, direct, chunk_hash))
                times[side, "get"].append(run(checkout, "get", root, dest, direct))
                os.unlink(dest)
        for op in ("put", "get"):
            for side in "AB":
                print(f"{op} {side}: " + " ".join(f"{t:.2f}" for t, _ in times[side, op]) + " s, CPU "
                      + " ".join(f"{c:.2f}" for _, c in times[side, op]) + " s")
            for i, what in ((0, "time"), (1, "CPU")):
                ratios = [b[i] / a[i] for a, b in zip(times["A", op], times["B", op])]
                print(f"{op} B/A {what} per round: " + " ".join(f"{r:.3f}" for r in ratios)
                      + f"  (median {statistics.median(ratios):.3f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
