"""Records of the versions writers are about to publish, so that gc keeps what they name.

A put (or copy) decides under its writer lease which chunks the store already has, and gc waits
for that lease. A writer paused past its lease (a laptop that sleeps, SIGSTOP, a NameNode failover
that stalls its requests) may still publish its manifest at any later moment, after a gc that
started once the lease expired has deleted chunks the manifest names. The writer's check of its
lease after publishing repairs that (it sends them again) unless the writer is killed in between.

So before it publishes, the writer records the manifest it is about to create (``pending/``,
``record``) and checks its lease once the record is stored. The lease held until then, so any gc
starts after the record exists, finds it (``pending``) and keeps every chunk and pack it names,
however late the manifest lands. The writer withdraws the record once its manifest is out. A
record outlives its writer only if the writer died or stopped: gc drops it once the writer is
known dead (a process of this host that no longer runs) or the record is ``MAX_AGE`` old.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import msgpack

from .errors import BadManifest, CasError
from .layout import PENDING, key_age, pending_key
from .leases import WRITER, Lease, LeaseInfo, holder_is_dead
from .manifest import MAX_MANIFEST_BYTES, unpack

log = logging.getLogger("cas")

# A record older than this is dropped even if its writer may be alive on another host: a writer
# paused this long and then killed right after publishing is the one case it no longer covers.
MAX_AGE = 7 * 86400.0
MAX_RECORD_BYTES = MAX_MANIFEST_BYTES + 4096  # the manifest and who wrote it


@dataclass(frozen=True)
class Intent:
    """A stored record; ``withdraw`` once the manifest it announces is published (or never will be)."""

    backend: object
    key: str

    def withdraw(self) -> None:
        try:
            self.backend.delete(self.key)
        except (OSError, CasError) as exc:  # gc drops it once its writer is gone
            log.info("could not remove %s (%s); gc removes it once this process has ended", self.key, exc)


def record(backend, lease: Lease, manifest_bytes: bytes) -> Intent:
    """Store a record of ``manifest_bytes`` (a packed manifest) written by ``lease``'s holder."""
    doc = {"host": lease.host, "manifest": manifest_bytes}
    if lease.started is not None:
        doc["started"] = lease.started
    if lease.node is not None:
        doc["node"] = lease.node
    key = pending_key()
    backend.create(key, msgpack.packb(doc, use_bin_type=True))
    return Intent(backend, key)


@dataclass
class Pending:
    """What gc must keep for writers that may still publish, and the records it may drop."""

    chunks: set[str] = field(default_factory=set)  # hex digests
    packs: set[str] = field(default_factory=set)  # hex pack ids
    kept: int = 0
    stale: list[str] = field(default_factory=list)


def pending(backend, *, max_age: float = MAX_AGE, now: float | None = None) -> Pending:
    """Read every record under ``pending/``. A record gc cannot read stops gc (raises BadManifest):
    the chunks it protects are unknown."""
    now = time.time() if now is None else now
    out = Pending()
    for obj in backend.walk(PENDING):
        try:
            data = backend.read(obj.key, 0, MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            continue  # withdrawn while we listed: its manifest is out
        if len(data) > MAX_RECORD_BYTES:
            raise BadManifest(f"{obj.key} in {backend.url} is over {MAX_RECORD_BYTES} bytes, too long for a record of "
                              "a version being published; remove it if no put or copy is running")
        damaged = BadManifest(f"{obj.key} in {backend.url} is not a record of a version being published; remove it "
                              "if no put or copy is running")
        try:
            doc = msgpack.unpackb(data, raw=False)
            writer = LeaseInfo(obj.key, WRITER, "", str(doc["host"]), 0.0,
                               float(doc["started"]) if doc.get("started") is not None else None,
                               str(doc["node"]) if doc.get("node") is not None else None)
            manifest_bytes = doc["manifest"]
        except Exception:
            raise damaged from None
        age = key_age(obj.key, now)
        # stale: its writer is gone, or it is too old; or stamped over a day ahead, which no clock
        # kept within seconds by NTP writes (it would otherwise never age)
        if holder_is_dead(writer) or age is None or not -86400.0 <= age <= max_age:
            out.stale.append(obj.key)
            continue
        try:
            m = unpack(manifest_bytes, name=f"the version recorded in {obj.key}")
        except Exception:
            raise damaged from None
        out.chunks |= {d.hex() for f in m.files for d in f.digests}
        out.packs |= {p.hex() for p in m.pack_ids()}
        out.kept += 1
    return out
