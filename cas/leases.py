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

Fencing. A lease protects only while it is *unbroken*: a process that is paused (a laptop that
sleeps, a VM that migrates, SIGSTOP) stops renewing with everything else, others see its lease
expire and go ahead, and when it wakes its heartbeat renews as if nothing happened. So a lease
remembers whether it ever lapsed: every renewal must land before the previous expiry, and
``Lease.check`` (called by a writer right before it publishes, by gc before each delete batch)
fails once it lapsed or has less than ``margin`` seconds left. A writer whose lease broke asks
again which chunks the store has; a gc whose lease broke stops deleting.

Leases are backend objects (``locks/<kind>.<owner>.<seq>``); a heartbeat creates seq+1 and
deletes seq, because objects are immutable on every backend. Expiry compares wall clocks of
different hosts: keep clocks within a few seconds (NTP), far below the TTL. A lease names its
host and process, so a lease left by a process that died on *this* host is known dead at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from .errors import CasError
from .layout import LOCKS, lease_key

DEFAULT_TTL = 60.0
WRITER = "writer"
GC = "gc"
MAX_LEASE_BYTES = 4096  # a lease object is ~100 bytes; anything bigger is junk and counts as expired

log = logging.getLogger("cas")
Clock = Callable[[], float]


class LeaseLost(CasError):
    """A lease lapsed (its holder was paused or cut off past its expiry): others may have acted."""


@dataclass(frozen=True)
class LeaseInfo:
    key: str
    kind: str
    owner: str
    host: str  # "hostname:pid"
    expires: float
    started: float | None = None  # the holder process's start time (to tell a reused pid)
    node: str | None = None  # the holder's kernel boot and pid namespace (see _this_node)

    def describe(self) -> str:
        return f"{self.kind} lease of {self.host}"


def live_leases(backend, kind: str | None = None, *, now: float | None = None) -> list[LeaseInfo]:
    """Leases that have not expired and whose holder is not known to be dead (of one kind, or all)."""
    now = time.time() if now is None else now
    return [lease for lease in all_leases(backend, kind) if lease.expires > now and not holder_is_dead(lease)]


def all_leases(backend, kind: str | None = None) -> list[LeaseInfo]:
    out = []
    for name in backend.list(LOCKS):
        parts = name.split(".")
        if len(parts) != 3 or (kind and parts[0] != kind):
            continue
        key = f"{LOCKS}/{name}"
        try:
            data = backend.read(key, 0, MAX_LEASE_BYTES + 1)
            if len(data) > MAX_LEASE_BYTES:
                raise ValueError("too long")
            doc = msgpack.unpackb(data, raw=False)
            started, node = doc.get("started"), doc.get("node")
            out.append(LeaseInfo(key, parts[0], parts[1], str(doc["host"]), float(doc["expires"]),
                                 float(started) if started is not None else None,
                                 str(node) if node is not None else None))
        except FileNotFoundError:
            continue  # renewed or released while we listed
        except Exception:  # a damaged lease file: treat as expired, gc sweeps it
            out.append(LeaseInfo(key, parts[0], parts[1], "?", 0.0))
    return out


def _this_host() -> str:
    return socket.gethostname()


def _this_node() -> str | None:
    """This kernel's boot id and this process's pid namespace, or None if unknown.

    A hostname alone does not say that a pid is ours to look up: containers run with the host's
    network (docker --network host, Kubernetes hostNetwork) share its hostname but not its pids,
    and unrelated machines may all be called "localhost".
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since boot, from /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def holder_is_dead(lease: LeaseInfo) -> bool:
    """True when the lease names a process on this host that no longer runs.

    A pid can be reused; the holder's start time (when recorded) tells a new process with the same pid
    from the holder. Leases of other hosts, other pid namespaces (containers) or that do not say
    which (older clients) are judged by their expiry alone.
    """
    hostname, _, pid_text = lease.host.rpartition(":")
    if hostname != _this_host() or not pid_text.isdigit():
        return False
    if lease.node is None or lease.node != _this_node():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by someone else
    if lease.started is not None:
        started = _process_start(pid)
        return started is not None and abs(started - lease.started) > 1.0
    return False


class Lease:
    """A held lease, renewed in the background until ``release``; ``check`` tells whether it held."""

    def __init__(self, backend, kind: str, *, ttl: float = DEFAULT_TTL, clock: Clock = time.time) -> None:
        self.backend = backend
        self.kind = kind
        self.ttl = ttl
        self.clock = clock
        self.owner = uuid.uuid4().hex[:16]
        self.host = f"{_this_host()}:{os.getpid()}"
        self.started = _process_start(os.getpid())
        self.node = _this_node()
        self.seq = 0
        self.valid_until = 0.0  # the expiry the newest lease object carries
        self.broken = False  # once True, others may have seen this lease expire
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.lost: BaseException | None = None  # the last renewal failure, if any

    @property
    def key(self) -> str:
        return lease_key(self.kind, self.owner, self.seq)

    def _write(self, seq: int) -> None:
        """Create lease object ``seq``; marks the lease broken if it lands after the last expiry."""
        expires = self.clock() + self.ttl
        doc = {"host": self.host, "expires": expires, "kind": self.kind}
        if self.started is not None:
            doc["started"] = self.started
        if self.node is not None:
            doc["node"] = self.node
        self.backend.create(lease_key(self.kind, self.owner, seq), msgpack.packb(doc))
        if seq > 1 and self.clock() >= self.valid_until:
            self.broken = True  # there was a moment when nobody could see this lease alive
        self.valid_until = expires

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
            except BaseException as exc:  # noqa: BLE001 - retried next beat; check() reports a lapse
                self.lost = exc

    def intact(self, margin: float = 0.0) -> bool:
        """True if the lease never lapsed and stays valid for at least ``margin`` more seconds."""
        with self._lock:
            if self.clock() + margin >= self.valid_until:
                self.broken = True
            return not self.broken

    def check(self, what: str, margin: float | None = None) -> None:
        """Raise LeaseLost (naming ``what`` was about to happen) unless the lease is intact.

        ``margin`` defaults to half the TTL: whatever follows the check must finish well inside it.
        """
        if not self.intact(self.ttl / 2 if margin is None else margin):
            cause = f" (last renewal error: {self.lost})" if self.lost else ""
            raise LeaseLost(f"the {self.kind} lease on {self.backend.url} lapsed before {what}: this process was "
                            f"paused or cut off for longer than the lease's {self.ttl:.0f} s{cause}")

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


def writer_lease(backend, *, ttl: float = DEFAULT_TTL, wait: float = 600.0, poll: float = 0.5,
                 clock: Clock = time.time) -> Lease:
    """Take a writer lease, waiting (up to ``wait`` seconds) while a garbage collection runs."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        lease = Lease(backend, WRITER, ttl=ttl, clock=clock).acquire()
        gcs = live_leases(backend, GC, now=clock())
        if not gcs:
            return lease
        lease.release()
        if time.monotonic() > deadline:
            raise CasError(f"a garbage collection by {gcs[0].host} holds {backend.url}; "
                           f"tried for {wait:.0f} s, try again later")
        if not told:
            log.warning("waiting for the garbage collection by %s on %s to finish (its lease expires in %.0f s "
                        "unless renewed)", gcs[0].host, backend.url, max(0.0, gcs[0].expires - clock()))
            told = True
        time.sleep(poll)


def gc_lease(backend, *, ttl: float = DEFAULT_TTL, wait: float = 600.0, poll: float = 0.5,
             clock: Clock = time.time) -> Lease:
    """Take the gc lease and wait (up to ``wait`` s) until no writer holds a live lease."""
    lease = Lease(backend, GC, ttl=ttl, clock=clock).acquire()
    try:
        rivals = [g for g in live_leases(backend, GC, now=clock()) if g.owner != lease.owner]
        if rivals:
            raise CasError(f"another garbage collection ({rivals[0].host}) is running on {backend.url}; "
                           "wait for it to finish")
        deadline = time.monotonic() + wait
        told = False
        while writers := live_leases(backend, WRITER, now=clock()):
            if time.monotonic() > deadline:
                raise CasError(f"{len(writers)} writer(s) still hold {backend.url} after {wait:.0f} s "
                               f"(e.g. {writers[0].host}); try gc again later")
            if not told:
                log.warning("gc waits for %d writer(s) on %s to finish (e.g. %s)", len(writers), backend.url,
                            writers[0].host)
                told = True
            time.sleep(poll)
        return lease
    except BaseException:
        lease.release()
        raise
