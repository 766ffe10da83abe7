"""A/B two versions of cas on put and get, in alternating fresh processes.

    git worktree add /tmp/cas-before <commit>
    .venv/bin/python bench/ab.py --a /tmp/cas-before --b . --size 1GiB --rounds 4

Each round runs, for A then B, a put of the same weights file into an empty local store, then a
get of that version into a new file, each in its own interpreter whose ``cas`` comes from the
given checkout (PYTHONPATH), so neither side inherits the other's page cache of its own store or
its warm imports. The machine is shared and noisy: compare the two columns round by round.
``--direct-writes/--no-direct-writes`` is passed to both sides' Store.open for get.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from conftest import parse_size, write_weights  # noqa: E402

CHILD = r"""
import os, sys, time
from cas import Store
op, root, path = sys.argv[1], sys.argv[2], sys.argv[3]
store = Store.open(root, cache_dir=False, **({} if sys.argv[4] == "default" else {"direct_writes": sys.argv[4] == "1"}))
os.sync()
t0 = time.perf_counter()
if op == "put":
    store.put(path, "m")
else:
    store.get("m@1", path)
print(f"{time.perf_counter() - t0:.3f}")
"""


def run(checkout: str, op: str, root: str, path: str, direct: str) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, op, root, path, direct], env=env, check=True,
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    return float(out.stdout.split()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="checkout whose cas/ is side A")
    ap.add_argument("--b", required=True, help="checkout whose cas/ is side B")
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--direct-writes", dest="direct", action="store_true", default=None)
    ap.add_argument("--no-direct-writes", dest="direct", action="store_false")
    ap.add_argument("--tmp", default=None, help="parent directory for data and stores (deleted afterwards)")
    opts = ap.parse_args(argv)
    direct = "default" if opts.direct is None else ("1" if opts.direct else "0")
    work = tempfile.mkdtemp(prefix="cas-ab-", dir=opts.tmp)
    try:
        weights = write_weights(os.path.join(work, "weights.f32"), parse_size(opts.size))
        times = {(side, op): [] for side in "AB" for op in ("put", "get")}
        for _ in range(opts.rounds):
            for side, checkout in (("A", opts.a), ("B", opts.b)):
                root, dest = os.path.join(work, f"store-{side}"), os.path.join(work, f"got-{side}")
                shutil.rmtree(root, ignore_errors=True)
                times[side, "put"].append(run(checkout, "put", root, weights, direct))
                times[side, "get"].append(run(checkout, "get", root, dest, direct))
                os.unlink(dest)
        for op in ("put", "get"):
            for side in "AB":
                print(f"{op} {side}: " + " ".join(f"{t:.2f}" for t in times[side, op]) + " s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
