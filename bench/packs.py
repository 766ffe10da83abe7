"""Packs on and off: real puts of each series of bench/datasets.py into fresh local stores.

For each series and each ``--pack-below`` value, the versions are put in order (default chunker,
4 MiB) into an empty local store; the figures are read from the store's files, not predicted:
stored bytes each version adds (``TransferStats.sent_stored_bytes``), and at the end the files
under ``chunks/`` and ``packs/`` and their bytes (objects per 100 MB = files x 10^8 / bytes).
Each version is then fetched back and compared byte for byte. Put and get times (whole series, one
run) are printed too: noisy on a shared machine, a sanity check rather than a benchmark.

    .venv/bin/python bench/datasets.py /tmp/packs/ds --formats keras,h5,savedmodel --unfreeze 11
    .venv/bin/python bench/packs.py /tmp/packs/ds --pack-below 1MiB --pack-below 0

``--small-files N``: instead, put and get a directory of N random 400 KB files (a model of small
tensors) through the WebHDFS test server (loopback), packs on and off, twice each, and print the
times: what one request per chunk costs against one per pack.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cas import Store
from cas.backends import LocalBackend
from cas.sizes import parse_size


def tree_files(root: str) -> tuple[int, int]:
    files = size = 0
    for d, _, names in os.walk(root):
        for n in names:
            files += 1
            size += os.path.getsize(os.path.join(d, n))
    return files, size


def same_tree(a: str, b: str) -> bool:
    if os.path.isfile(a):
        return filecmp.cmp(a, b, shallow=False)
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    return all(filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False) for f in cmp.common_files) and \
        all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def run_series(series: dict, pack_below: int, work: str) -> dict:
    root = os.path.join(work, f"{series['name']}-{pack_below}")
    store = Store(LocalBackend(root), cache_dir=False)
    added = []
    started = time.perf_counter()
    for v in series["versions"]:
        store.put(v["path"], "m", pack_below=pack_below)
        t = store.last_transfer
        added.append({"stored_bytes": t.sent_stored_bytes, "packs": t.sent_packs,
                      "reused_packed_chunks": t.reused_packed_chunks})
    put_seconds, get_seconds = time.perf_counter() - started, 0.0
    for v, m in zip(series["versions"], store.versions("m")):
        out = os.path.join(work, "back")
        started = time.perf_counter()
        store.get(f"m@{m}", out)
        get_seconds += time.perf_counter() - started
        assert same_tree(v["path"], out), (series["name"], m)
        shutil.rmtree(out) if os.path.isdir(out) else os.unlink(out)
    chunk_files, chunk_bytes = tree_files(os.path.join(root, "chunks"))
    pack_files, pack_bytes = tree_files(os.path.join(root, "packs"))
    stored = chunk_bytes + pack_bytes
    store.close()
    shutil.rmtree(root)
    return {"series": series["name"], "pack_below": pack_below, "versions": added, "chunk_objects": chunk_files,
            "packs": pack_files, "stored_bytes": stored, "put_seconds": round(put_seconds, 2),
            "get_seconds": round(get_seconds, 2),
            "objects_per_100mb": round((chunk_files + pack_files) * 1e8 / stored, 1)}


def small_files(n_files: int) -> None:
    import uuid

    from cas.testing.webhdfs_server import WebHdfsServer

    with tempfile.TemporaryDirectory(prefix="cas-packs-small-") as work, WebHdfsServer() as server:
        src = os.path.join(work, "src")
        os.makedirs(src)
        for i in range(n_files):
            with open(os.path.join(src, f"t{i:04d}.bin"), "wb") as f:
                f.write(os.urandom(400_000))
        for pack_below in [0, 1 << 20] * 2:
            url = server.store_url(root=f"/bench/{uuid.uuid4().hex[:8]}", user="cas")
            with Store.open(url, cache_dir=False, n_workers=8) as store:
                started = time.perf_counter()
                store.put(src, "m", pack_below=pack_below)
                put_s = time.perf_counter() - started
                packs = store.last_transfer.sent_packs
                started = time.perf_counter()
                store.get("m", os.path.join(work, f"out-{uuid.uuid4().hex[:6]}"))
                get_s = time.perf_counter() - started
            print(f"{n_files} files of 400 KB, pack_below {pack_below:>8}: put {put_s:.2f} s, get {get_s:.2f} s "
                  f"({packs} packs)", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="?", help="the directory bench/datasets.py wrote (with series.json)")
    p.add_argument("--series", default="keras-own,h5-own,savedmodel")
    p.add_argument("--pack-below", type=parse_size, action="append", metavar="SIZE")
    p.add_argument("--out", help="also write the results as JSON lines here")
    p.add_argument("--small-files", type=int, metavar="N", help="the WebHDFS small-files run instead (see above)")
    args = p.parse_args()
    if args.small_files:
        small_files(args.small_files)
        return 0
    if not args.datasets:
        p.error("give the datasets directory (or --small-files N)")
    with open(os.path.join(args.datasets, "series.json")) as f:
        all_series = {s["name"]: s for s in json.load(f)["series"]}
    results = []
    with tempfile.TemporaryDirectory(prefix="cas-packs-") as work:
        for name in args.series.split(","):
            for pack_below in args.pack_below or [1 << 20, 0]:
                r = run_series(all_series[name], pack_below, work)
                results.append(r)
                print(f"{r['series']:<11} pack_below {pack_below:>8}: adds "
                      + " / ".join(f"{v['stored_bytes'] / 1e6:.2f}" for v in r["versions"])
                      + f" MB; {r['chunk_objects']} chunk objects + {r['packs']} packs, "
                      f"{r['stored_bytes'] / 1e6:.2f} MB, {r['objects_per_100mb']} objects per 100 MB; "
                      f"put {r['put_seconds']} s, get {r['get_seconds']} s", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
