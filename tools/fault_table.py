"""Run put and get under every injected WebHDFS (or S3) fault and print the outcome table (docs/faults.md).

    .venv/bin/python tools/fault_table.py [--trials 5] > docs/faults.md
    .venv/bin/python tools/fault_table.py --backend s3 [--trials 5] > docs/faults-s3.md
"""

import argparse
import datetime
import platform

from cas.testing.fault_matrix import BACKEND_OPTIONS, SIZE, markdown, run_matrix
from cas.testing.webhdfs_server import WebHdfsServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="operations per fault, operation and mode")
    parser.add_argument("--backend", choices=["webhdfs", "s3"], default="webhdfs")
    args = parser.parse_args()
    if args.backend == "s3":
        return main_s3(args)
    with WebHdfsServer() as server:
        rows = run_matrix(server, trials=args.trials)
    print("# put and get under WebHDFS faults\n")
    print(f"Measured {datetime.date.today()} on {platform.machine()} ({platform.python_version()}) with "
          f"`python tools/fault_table.py --trials {args.trials}` against the project's WebHDFS test server.")
    print(f"Each operation moves a {SIZE // 1024} KiB version in 64 KiB chunks; backend options {BACKEND_OPTIONS}.")
    print("Each fault matches only the chunk transfers (paths under tmp/ for a put, chunks/ for a get) and starts "
          "after the first 2 of them; transient = it then hits 2 requests (a datanode outage: 0.3 s), "
          "persistent = every one. Rows marked (packs) store the version in one pack (the default for small "
          "chunks): the fault then hits the pack's upload, or the get's ranged reads of it (packs/).\n")
    print(markdown(rows))
    print("\nSucceeded and failed-cleanly outcomes are checked from outside after each trial: `verify --full` "
          "of the store, the bytes of the version or destination, no version published by a failed put, "
          "no destination left by a failed get.")
    errors = {(r.fault, r.op, r.mode): r.example_error for r in rows if r.example_error and r.mode == "persistent"}
    if errors:
        print("\nThe one-line error a user sees when the fault persists (first trial):\n")
        for (fault, op, _mode), error in errors.items():
            print(f"- {fault}, {op}: `{error[:300]}`")


def main_s3(args) -> None:
    from cas.testing import s3_fault_matrix as s3
    from cas.testing.s3_server import S3TestServer

    with S3TestServer() as server:
        rows = s3.run_matrix(server, trials=args.trials)
    print("# put and get under S3 faults\n")
    print(f"Measured {datetime.date.today()} on {platform.machine()} ({platform.python_version()}) with "
          f"`python tools/fault_table.py --backend s3 --trials {args.trials}` against moto's S3 server behind "
          "the fault-injecting proxy of `cas.testing.s3_proxy`.")
    print(f"Each operation moves a {s3.SIZE // 1024} KiB version in 64 KiB chunks; backend options "
          f"{s3.BACKEND_OPTIONS}.")
    print("Each fault matches only the chunk transfers (PUTs under chunks/ for a put, GETs of chunks/ for a get) "
          "and starts after the first 2 of them; transient = it then hits 2 requests, persistent = every one. "
          "Rows marked (packs) store the version in one pack (the default for small chunks): the fault then hits "
          "the pack's upload, or the get's ranged reads of it (packs/), from the first.\n")
    print(markdown(rows))
    print("\nSucceeded and failed-cleanly outcomes are checked from outside after each trial (no proxy): "
          "`verify --full` of the store, the bytes of the version or destination, no version published by a "
          "failed put, no destination left by a failed get.")
    errors = {(r.fault, r.op): r.example_error for r in rows if r.example_error and r.mode == "persistent"}
    if errors:
        print("\nThe one-line error a user sees when the fault persists (first trial):\n")
        for (fault, op), error in errors.items():
            print(f"- {fault}, {op}: `{error[:300]}`")


if __name__ == "__main__":
    main()
