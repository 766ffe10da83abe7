"""Put and get under injected WebHDFS faults: does every operation succeed or fail cleanly?

Each trial arms one fault on the WebHDFS test server, runs one put (a new version with fresh
bytes) or one get (into a fresh destination), then checks the outcome from outside:

- succeeded: the operation returned, and what it stored or fetched is byte-for-byte right;
- failed cleanly: it raised a cas or OS error with a one-line message, published no version,
  and left no destination behind;
- corrupted: anything else that damages data: a published version that does not verify, a
  destination with wrong bytes, a partial destination (must always be 0);
- crashed: it raised something outside the project's error types (must be 0 too).

A *transient* fault hits a few requests (fewer than the retry budget) and must end in success; a
*persistent* one hits every matching request and must end in a clean failure. Faults match only
requests for the chunk transfers (paths under tmp/ for a put, chunks/ for a get) and start after
the first two of those, so they land midway, among the chunk transfers. Puts store one object
per chunk (``pack_below=0``) so there are chunk transfers to hit, except in the rows marked
"(packs)": there the version's chunks go in one pack (the default), a put's fault hits the pack's
upload and a get's its ranged reads (from the first: a packed get reads the pack once). Run it as
``python tools/fault_table.py`` for the table in docs/faults.md.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass

from cas import Store
from cas.errors import CasError
from cas.packing import DEFAULT_PACK_BELOW

# Small timeouts and backoff so a persistent fault fails in seconds, not minutes.
BACKEND_OPTIONS = {"retries": 4, "backoff": 0.05, "backoff_max": 0.5, "timeout": 1.0, "connect_timeout": 1.0}
CHUNK = 64 * 1024
SIZE = 16 * CHUNK


@dataclass(frozen=True)
class Fault:
    name: str
    ops: tuple[str, ...]  # which of "put", "get" it applies to
    params: dict | None  # server.inject(**params); None = take datanode 0 down
    slow: bool = False  # tens of seconds a trial: in docs/faults.md, left out of the test suite
    packed: bool = False  # the version's chunks in a pack (the default), not an object each

    @property
    def pack_below(self) -> int:
        return DEFAULT_PACK_BELOW if self.packed else 0


FAULTS = (
    Fault("connection refused by the namenode", ("put", "get"), dict(kind="refuse", node="namenode")),
    Fault("connection refused by the datanode", ("put", "get"), dict(kind="refuse", node="datanode")),
    Fault("HTTP 500 from the namenode", ("put", "get"), dict(kind="status", code=500, node="namenode")),
    Fault("HTTP 503 from the datanode", ("put", "get"), dict(kind="status", code=503, node="datanode")),
    Fault("response cut midway (read)", ("get",), dict(kind="cut_response", node="datanode", op="OPEN")),
    Fault("response cut midway (RENAME answer)", ("put",), dict(kind="cut_response", op="RENAME")),
    Fault("upload cut midway", ("put",), dict(kind="cut_upload", op="CREATE")),
    Fault("stalled datanode", ("put", "get"), dict(kind="stall", node="datanode", seconds=1.5)),
    # a body dripping 1 KiB every 0.1 s, and one that never ends: each read must be cut by its
    # deadline (timeout + length / min_rate), not wait for the server
    Fault("trickling datanode answer (read)", ("get",),
          dict(kind="trickle", node="datanode", op="OPEN", size=1024, interval=0.1), slow=True),
    Fault("endless datanode answer (read)", ("get",), dict(kind="endless", node="datanode", op="OPEN")),
    Fault("datanode taken down", ("put", "get"), None),
    Fault("HTTP 503 from the datanode (packs)", ("put", "get"), dict(kind="status", code=503, node="datanode"),
          packed=True),
    Fault("upload cut midway (packs)", ("put",), dict(kind="cut_upload", op="CREATE"), packed=True),
    Fault("response cut midway (ranged read of a pack)", ("get",),
          dict(kind="cut_response", node="datanode", op="OPEN"), packed=True),
)


@dataclass
class Row:
    fault: str
    op: str
    mode: str
    tried: int = 0
    succeeded: int = 0
    failed_cleanly: int = 0
    corrupted: int = 0
    crashed: int = 0
    example_error: str = ""

    @property
    def as_expected(self) -> bool:
        """Nothing corrupted or crashed; a transient fault survived every time, a persistent one
        failed cleanly every time."""
        if self.corrupted or self.crashed:
            return False
        return (self.succeeded if self.mode == "transient" else self.failed_cleanly) == self.tried


def _arm(server, fault: Fault, persistent: bool, root: str, op: str):
    """Arm the fault for requests of the operation's chunk transfers; returns a function that disarms it."""
    if fault.params is None:
        server.datanode_down(0)
        if persistent:
            return lambda: server.datanode_up(0)
        timer = threading.Timer(0.3, server.datanode_up, args=(0,))  # back within the retry window (~0.75 s)
        timer.start()
        return lambda: (timer.join(), server.datanode_up(0))
    params = dict(fault.params)
    # Only requests under the chunk paths match: a put stages every object under tmp/ (its writer
    # lease first: two namenode requests, one datanode request), a get reads chunks/. skip=2 lets
    # the first two matching requests through, so the fault lands among the chunk transfers.
    read_from = "packs" if fault.packed else "chunks"
    params.setdefault("path_prefix", f"{root}/tmp/" if op == "put" else f"{root}/{read_from}/")
    # a packed put uploads its writer lease, then its one pack; a packed get reads that pack once
    skip = (1 if op == "put" else 0) if fault.packed else 2
    server.inject(params.pop("kind"), times=None if persistent else 2, skip=skip, **params)
    return server.clear_faults


def _one_line(exc: BaseException) -> bool:
    return isinstance(exc, (CasError, OSError)) and "\n" not in str(exc).strip()


def run_trial(server, fault: Fault, op: str, persistent: bool, workdir: str) -> tuple[str, str]:
    """One operation under one fault; returns (outcome, error text)."""
    root = f"/faults/{uuid.uuid4().hex[:10]}"
    url = server.store_url(root=root, user="cas")
    clean = Store.open(url, cache_dir=False, n_workers=4, **BACKEND_OPTIONS)
    src = os.path.join(workdir, f"src-{uuid.uuid4().hex[:8]}")
    with open(src, "wb") as f:
        f.write(os.urandom(SIZE))
    if op == "get":
        clean.put(src, "m", chunk_size=CHUNK, pack_below=fault.pack_below)
    dest = os.path.join(workdir, f"dest-{uuid.uuid4().hex[:8]}")
    faulty = Store.open(url, cache_dir=False, n_workers=4, **BACKEND_OPTIONS)
    disarm = _arm(server, fault, persistent, root, op)
    try:
        outcome, error = attempt(faulty, op, src, dest, pack_below=fault.pack_below)
    finally:
        disarm()
    return _check(clean, op, outcome, src, dest), error


def attempt(faulty: Store, op: str, src: str, dest: str, *, pack_below: int = 0) -> tuple[str, str]:
    """Run one put or get through a faulty store: ("succeeded" | "failed_cleanly" | "crashed", error)."""
    try:
        if op == "put":
            faulty.put(src, "m", chunk_size=CHUNK, pack_below=pack_below)
        else:
            faulty.get("m", dest)
        return "succeeded", ""
    except Exception as exc:  # noqa: BLE001 - classified here
        return ("failed_cleanly" if _one_line(exc) else "crashed"), f"{type(exc).__name__}: {exc}"


def _check(store: Store, op: str, outcome: str, src: str, dest: str) -> str:
    """Look from outside, with no faults armed: is everything that is visible intact?"""
    with open(src, "rb") as f:
        want = f.read()
    if store.verify(full=True).problems:
        return "corrupted"
    if op == "put":
        versions = store.versions("m")
        if outcome == "succeeded":
            if versions != ["1"]:
                return "corrupted"
            back = dest + ".check"
            store.get("m@1", back)
            with open(back, "rb") as f:
                return outcome if f.read() == want else "corrupted"
        return outcome if versions == [] else "corrupted"  # a failed put publishes nothing
    if outcome == "succeeded":
        with open(dest, "rb") as f:
            return outcome if f.read() == want else "corrupted"
    return outcome if not os.path.exists(dest) else "corrupted"


def run_matrix(server, *, trials: int = 3, faults=FAULTS, trial=None) -> list[Row]:
    """Every fault x operation x mode, ``trials`` times each; ``trial`` runs one (default: WebHDFS's)."""
    run_trial_ = trial or run_trial
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for fault in faults:
            for op in fault.ops:
                for persistent in (False, True):
                    row = Row(fault.name, op, "persistent" if persistent else "transient")
                    for _ in range(trials):
                        outcome, error = run_trial_(server, fault, op, persistent, workdir)
                        row.tried += 1
                        setattr(row, outcome, getattr(row, outcome) + 1)
                        if error and not row.example_error:
                            row.example_error = error
                    rows.append(row)
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| fault | operation | mode | tried | succeeded | failed cleanly | corrupted | crashed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.fault} | {r.op} | {r.mode} | {r.tried} | {r.succeeded} | {r.failed_cleanly} | "
                     f"{r.corrupted} | {r.crashed} |")
    totals = Counter()
    for r in rows:
        totals.update(tried=r.tried, succeeded=r.succeeded, failed=r.failed_cleanly, corrupted=r.corrupted,
                      crashed=r.crashed)
    lines.append(f"| **all** | | | {totals['tried']} | {totals['succeeded']} | {totals['failed']} | "
                 f"{totals['corrupted']} | {totals['crashed']} |")
    return "\n".join(lines)
