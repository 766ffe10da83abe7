"""Leases: how garbage collection and writers stay out of each other's way, with no stale locks.

The race gc must not lose: a put asks which chunks are missing, learns that chunk X exists and
skips it, gc (which sees no manifest naming X yet) deletes X, the put publishes a manifest that
names X. So writers and gc exclude each other, like restic's shared and exclusive locks, but every
lock here is a *lease*: a small object holding an expiry time, renewed by a heartbeat thread. A
process that dies (kill -9, lost network) stops renewing, and its lease simply expires; nobody
has to find and delete it by hand. Expired leases are ignored by everyone and swept by gc.

Handshake (both sides write first, then look, so at least one of two racers sees the other):
- a writer creates its lease, then looks for a live gc lease; if there is one it withdraws its
  lease and waits for the gc to end;
- gc creates its lease, then waits until no live writer lease remains, then works.

Leases are backend objects (``locks/<kind>.<owner>.<seq>``); a heartbeat creates seq+1 and
deletes seq, because objects are immutable on every backend. Expiry compares wall clocks of
different hosts: keep clocks within a few seconds (NTP), far below the TTL.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import msgpack

from .errors import CasError
from .layout import LOCKS, lease_key

DEFAULT_TTL = 60.0
WRITER = "writer"
GC = "gc"


@dataclass(frozen=True)
class LeaseInfo:
    key: str
    kind: str
    owner: str
    host: str
    expires: float


def live_leases(backend, kind: str | None = None, *, now: float | None = None) -> list[LeaseInfo]:
    """Leases that have not expired (of one kind, or all)."""
    now = time.time() if now is None else now
    return [lease for lease in all_leases(backend, kind) if lease.expires > now]


def all_leases(backend, kind: str | None = None) -> list[LeaseInfo]:
    out = []
    for name in backend.list(LOCKS):
        parts = name.split(".")
        if len(parts) != 3 or (kind and parts[0] != kind):
            continue
        key = f"{LOCKS}/{name}"
        try:
            doc = msgpack.unpackb(backend.read(key), raw=False)
            out.append(LeaseInfo(key, parts[0], parts[1], str(doc["host"]), float(doc["expires"])))
        except FileNotFoundError:
            continue  # renewed or released while we listed
        except Exception:  # a damaged lease file: treat as expired, gc sweeps it
            out.append(LeaseInfo(key, parts[0], parts[1], "?", 0.0))
    return out


class Lease:
    """A held lease, renewed in the background until ``release``."""

    def __init__(self, backend, kind: str, *, ttl: float = DEFAULT_TTL) -> None:
        self.backend = backend
        self.kind = kind
        self.ttl = ttl
        self.owner = uuid.uuid4().hex[:16]
        self.host = f"{socket.gethostname()}:{os.getpid()}"
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.lost: BaseException | None = None

    @property
    def key(self) -> str:
        return lease_key(self.kind, self.owner, self.seq)

    def _write(self, seq: int) -> None:
        doc = {"host": self.host, "expires": time.time() + self.ttl, "kind": self.kind}
        self.backend.create(lease_key(self.kind, self.owner, seq), msgpack.packb(doc))

    def acquire(self) -> "Lease":
        self.seq = 1
        self._write(self.seq)
        self._thread = threading.Thread(target=self._renew_loop, name=f"cas-lease-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._write(self.seq + 1)
                    old, self.seq = self.seq, self.seq + 1
                    self.backend.delete(lease_key(self.kind, self.owner, old))
            except BaseException as exc:  # noqa: BLE001 - retried next beat; the owner checks .lost
                self.lost = exc

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            try:
                self.backend.delete(self.key)
            except OSError:
                pass  # it expires on its own

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def writer_lease(backend, *, ttl: float = DEFAULT_TTL, wait: float = 600.0, poll: float = 0.5) -> Lease:
    """Take a writer lease, waiting (up to ``wait`` seconds) while a garbage collection runs."""
    deadline = time.monotonic() + wait
    while True:
        lease = Lease(backend, WRITER, ttl=ttl).acquire()
        gcs = live_leases(backend, GC)
        if not gcs:
            return lease
        lease.release()
        if time.monotonic() > deadline:
            raise CasError(f"a garbage collection by {gcs[0].host} holds {backend.url}; "
                           f"tried for {wait:.0f} s, try again later")
        time.sleep(poll)


def gc_lease(backend, *, ttl: float = DEFAULT_TTL, wait: float = 600.0, poll: float = 0.5) -> Lease:
    """Take the gc lease and wait (up to ``wait`` s) until no writer holds a live lease."""
    lease = Lease(backend, GC, ttl=ttl).acquire()
    try:
        rivals = [g for g in live_leases(backend, GC) if g.owner != lease.owner]
        if rivals:
            raise CasError(f"another garbage collection ({rivals[0].host}) is running on {backend.url}; "
                           "wait for it to finish")
        deadline = time.monotonic() + wait
        while writers := live_leases(backend, WRITER):
            if time.monotonic() > deadline:
                raise CasError(f"{len(writers)} writer(s) still hold {backend.url} after {wait:.0f} s "
                               f"(e.g. {writers[0].host}); try gc again later")
            time.sleep(poll)
        return lease
    except BaseException:
        lease.release()
        raise
