"""Peak RSS of put and get with large chunks or many threads, with and without the memory budget.

    .venv/bin/python bench/peak_rss.py [--size-mib 1024]

Each case runs in a fresh process (ru_maxrss is a high-water mark); the model is random bytes in a
temporary directory, the store a local one beside it. ``budget=off`` sets memory_budget so high
that threads are no longer capped: what cas did before the budget existed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import sys
    from cas import Store
    store_dir, src, out, op, chunk, workers, budget = sys.argv[1:8]
    store = Store.open(store_dir, cache_dir=False, n_workers=int(workers), memory_budget=int(budget))
    if op == "put":
        store.put(src, "m", chunk_size=int(chunk))
    else:
        store.get("m", out, force=True)
    with open("/proc/self/status") as f:  # VmHWM: ru_maxrss would include the pre-exec copy of the parent
        print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024)
""")

CASES = [("256 MiB chunks, 8 workers", 256 << 20, 8), ("4 MiB chunks, 200 workers", 4 << 20, 200)]
OFF = 1 << 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        src = os.path.join(tmp, "model.bin")
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        print(f"{'case':28} {'budget':>8} {'put MiB':>8} {'get MiB':>8}")
        for label, chunk, workers in CASES:
            for budget_label, budget in (("off", OFF), ("512 MiB", 512 << 20)):
                store = os.path.join(tmp, f"store-{chunk}-{workers}-{budget_label.split()[0]}")
                peaks = []
                for op in ("put", "get"):
                    done = subprocess.run([sys.executable, "-c", CHILD, store, src, os.path.join(tmp, "out.bin"), op,
                                           str(chunk), str(workers), str(budget)],
                                          capture_output=True, text=True, check=True)
                    peaks.append(int(done.stdout.split()[-1]))
                print(f"{label:28} {budget_label:>8} {peaks[0]:>8} {peaks[1]:>8}", flush=True)


if __name__ == "__main__":
    main()
