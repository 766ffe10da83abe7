"""Put and get under injected S3 faults, the S3 half of ``cas.testing.fault_matrix``.

Each trial puts a fault-injecting proxy (``cas.testing.s3_proxy``) between a store and moto,
arms one fault, runs one put (a new version of fresh bytes) or one get (into a fresh destination),
then checks the outcome from outside, without the proxy, with ``fault_matrix``'s rules: succeeded
(bytes right), failed cleanly (one-line error, no version published, no destination left),
corrupted or crashed (both must be 0). Transient faults hit 2 requests (fewer than the retry
budget) and must end in success; persistent ones hit every matching request and must fail
cleanly. Faults match only chunk transfers (PUTs under chunks/ for a put, GETs of chunks/ for a
get) and start after the first 2 of them; rows marked (packs) hit the version's one pack (packs/)
from its first request.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from cas import Store

from . import fault_matrix
from ..packing import DEFAULT_PACK_BELOW
from .fault_matrix import CHUNK, SIZE, Row, _check
from .s3_proxy import FaultProxy

# Small timeouts and few retries so a persistent fault fails in seconds (botocore's backoff is
# random up to 2^attempt seconds and cannot be shortened).
BACKEND_OPTIONS = {"retries": 2, "timeout": 1.0, "connect_timeout": 1.0}


@dataclass(frozen=True)
class S3Fault:
    name: str
    ops: tuple[str, ...]
    action: str  # a FaultProxy action
    packed: bool = False  # the version's chunks in a pack (the default for small chunks), not an object each

    @property
    def pack_below(self) -> int:
        return DEFAULT_PACK_BELOW if self.packed else 0


FAULTS = (
    S3Fault("503 SlowDown", ("put", "get"), "slowdown"),
    S3Fault("connection reset", ("put", "get"), "reset"),
    S3Fault("answer lost after the PUT landed", ("put",), "drop_answer"),
    S3Fault("body cut midway", ("get",), "cut_body"),
    S3Fault("stalled response", ("put", "get"), "stall"),
    S3Fault("connection reset (packs)", ("put", "get"), "reset", packed=True),
    S3Fault("answer lost after the PUT landed (packs)", ("put",), "drop_answer", packed=True),
    S3Fault("body cut midway (ranged read of a pack)", ("get",), "cut_body", packed=True),
)


def run_trial(server, fault: S3Fault, op: str, persistent: bool, workdir: str) -> tuple[str, str]:
    """One operation under one fault; returns (outcome, error text)."""
    url = server.store_url(prefix=f"faults-{uuid.uuid4().hex[:10]}")
    clean = Store.open(url, cache_dir=False, n_workers=4, **BACKEND_OPTIONS)
    src = os.path.join(workdir, f"src-{uuid.uuid4().hex[:8]}")
    with open(src, "wb") as f:
        f.write(os.urandom(SIZE))
    if op == "get":  # one object per chunk (transfers to hit), or one pack
        clean.put(src, "m", chunk_size=CHUNK, pack_below=fault.pack_below)
    dest = os.path.join(workdir, f"dest-{uuid.uuid4().hex[:8]}")
    with FaultProxy(server.endpoint, stall_seconds=2.0) as proxy:
        faulty = Store.open(url.replace(server.endpoint, proxy.endpoint), cache_dir=False, n_workers=4,
                            **BACKEND_OPTIONS)
        # a packed version is one pack: its upload, or the get's ranged reads of it, from the first
        proxy.add(fault.action, method="PUT" if op == "put" else "GET",
                  path_contains="/packs/" if fault.packed else "/chunks/", times=None if persistent else 2,
                  skip=0 if fault.packed else 2)
        try:
            outcome, error = fault_matrix.attempt(faulty, op, src, dest, pack_below=fault.pack_below)
        finally:
            faulty.close()
    try:
        return _check(clean, op, outcome, src, dest), error
    finally:
        clean.close()


def run_matrix(server, *, trials: int = 3, faults=FAULTS) -> list[Row]:
    return fault_matrix.run_matrix(server, trials=trials, faults=faults, trial=run_trial)
