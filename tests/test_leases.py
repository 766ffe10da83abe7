"""Leases under pauses: a writer or gc stopped (SIGSTOP, a sleeping laptop) past its lease TTL
must never publish a version with missing chunks nor delete a chunk of a live version.

Each case pauses a real process with SIGSTOP at the point that matters, lets the lease expire
(a short TTL, not a 65 s sleep), lets the other side act, then resumes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cas import Store
from cas.errors import CasError
from cas.leases import WRITER, Lease, LeaseInfo, holder_is_dead, live_leases
from cas.packing import DEFAULT_PACK_BELOW

TTL = 1.0  # the paused child's lease
OWN_TTL = 10.0  # this process's leases: long enough never to lapse on a loaded CI machine
CHUNK = 64 * 1024

# Each child stops itself (SIGSTOP, as Ctrl-Z would) right after the step named by its hook.
PUT_PAUSED = """
import os, signal, sys
from cas import Store
url, src = sys.argv[1], sys.argv[2]
store = Store.open(url, cache_dir=False)
store.lease_ttl = float(sys.argv[3])
real_missing, paused = store.backend.missing, []
def missing(keys):
    out = real_missing(keys)
    if not paused:  # it holds its writer lease and has decided which chunks to skip
        paused.append(1)
        os.kill(os.getpid(), signal.SIGSTOP)
    return out
store.backend.missing = missing
m = store.put(src, "m", chunk_size=65536, pack_below=int(sys.argv[4]))
print(store.last_transfer.sent_chunks, len(m.chunk_lengths()))
"""

# Paused after its chunks are stored, before it publishes; reports the chunks missing when it published.
PUT_PAUSED_BEFORE_PUBLISH = """
import os, signal, sys
import cas.store
from cas import Store
from cas.layout import chunk_key
store = Store.open(sys.argv[1], cache_dir=False)
store.lease_ttl = float(sys.argv[3])
real_check = cas.store.check_unchanged
def check_unchanged(sources):
    real_check(sources)
    os.kill(os.getpid(), signal.SIGSTOP)
cas.store.check_unchanged = check_unchanged
real_publish = store._publish
def publish(draft, **kwargs):
    m = real_publish(draft, **kwargs)
    keys = {chunk_key(d.hex()) for f in m.files for d in f.digests}
    print("missing-at-publish", len(store.backend.missing(keys)), file=sys.stderr)  # what a reader would have found missing
    return m
store._publish = publish
m = store.put(src := sys.argv[2], "m", chunk_size=65536, pack_below=0)
print(store.last_transfer.sent_chunks, len(m.chunk_lengths()))
"""

# Paused on its way to publishing (inside the manifest's create, past its lease), then killed the
# moment the manifest has landed: no check after publishing can run.
KILLED_AFTER_A_LATE_PUBLISH = """
import os, signal, sys
from cas import Store
store = Store.open(sys.argv[1], cache_dir=False)
store.lease_ttl = float(sys.argv[3])
real_create = store.backend.create
def create(key, data):
    if key.startswith("manifests/") and key.endswith(".msgpack"):
        os.kill(os.getpid(), signal.SIGSTOP)
        real_create(key, data)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_create(key, data)
store.backend.create = create
"""
PUT_KILLED_AFTER_A_LATE_PUBLISH = KILLED_AFTER_A_LATE_PUBLISH + """
store.put(sys.argv[2], "m", chunk_size=65536, pack_below=0)
"""
COPY_KILLED_AFTER_A_LATE_PUBLISH = KILLED_AFTER_A_LATE_PUBLISH + """
Store.open(sys.argv[2], cache_dir=False).copy("m@1", store)
"""

# The end of every gc child: the chunks it deleted on stdout, or its one-line error and exit 1.
RUN_GC = """
try:
    print(store.gc(grace=0).deleted_chunks)
except CasError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""

GC_PAUSED = """
import os, signal, sys
from cas import Store
from cas.errors import CasError
store = Store.open(sys.argv[1], cache_dir=False)
store.lease_ttl = float(sys.argv[3])
real_walk = store.backend.walk
def walk(prefix):
    for i, obj in enumerate(real_walk(prefix)):
        yield obj
        if prefix == "chunks" and i == 0:  # paused in the middle of its walk of the chunks
            os.kill(os.getpid(), signal.SIGSTOP)
store.backend.walk = walk
""" + RUN_GC

# Paused between its lease check and its delete of a chunk (the move that sets it aside): the
# delete lands after the lease lapsed (as one does after a NameNode failover stalled the request and
# the lease renewals alike).
GC_PAUSED_IN_DELETE = """
import os, signal, sys, threading
from cas import Store
from cas.errors import CasError
store = Store.open(sys.argv[1], cache_dir=False, n_workers=1)
store.lease_ttl = float(sys.argv[3])
real_move, paused = store.backend.move, []
def move(src, dst):
    if src.startswith(("chunks/", "packs/")) and not paused:
        paused.append(1)
        # at this thread (a gc worker): a process-wide SIGSTOP may be taken by another thread while
        # this one runs on into the move
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
    return real_move(src, dst)
store.backend.move = move
""" + RUN_GC

GET_PAUSED = """
import functools, os, signal, sys
from cas import Store
from cas.backends.base import Backend
store = Store.open(sys.argv[1], cache_dir=False, n_workers=1)
real_read, paused = store.backend.read, []
def read(key, *args, **kwargs):
    out = real_read(key, *args, **kwargs)
    if key.startswith(("chunks/", "packs/")) and not paused:
        paused.append(1)
        os.kill(os.getpid(), signal.SIGSTOP)
    return out
store.backend.read = read
# every chunk through read() (Backend's default read_into), so the pause lands mid-download
store.backend.read_into = functools.partial(Backend.read_into, store.backend)
store.get("m", sys.argv[2])
"""


def _start_paused(script: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once it has stopped itself
    if not os.WIFSTOPPED(status):
        out, err = proc.communicate()
        pytest.fail(f"the child ended before its pause point: {err}")
    return proc


def _resume(proc: subprocess.Popen) -> tuple[int, str, str]:
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _store(url: str) -> Store:
    store = Store.open(url, cache_dir=False)
    store.lease_ttl = OWN_TTL
    return store


@pytest.fixture
def garbage_base(tmp_path, process_shared_url):
    """A store whose only chunks belong to a removed version (base.bin): garbage a put may reuse."""
    base = tmp_path / "src" / "base.bin"
    base.parent.mkdir()
    base.write_bytes(os.urandom(1 << 20))
    store = _store(process_shared_url)
    store.put(str(base), "base", chunk_size=CHUNK, pack_below=0)
    store.rm("base@1")
    return process_shared_url, base


def test_a_put_paused_past_its_lease_while_gc_runs_still_publishes_a_whole_version(tmp_path, garbage_base):
    url, base = garbage_base
    (base.parent / "new.bin").write_bytes(os.urandom(2 << 20))
    put = _start_paused(PUT_PAUSED, url, str(base.parent), str(TTL), "0")
    time.sleep(TTL * 1.5)  # its lease expires: gc goes ahead and deletes base.bin's chunks
    report = _store(url).gc(grace=TTL)
    assert report.deleted_chunks == 16
    code, out, err = _resume(put)
    assert code == 0, err
    assert "lapsed" in err  # it noticed, and asked the store again instead of trusting what it knew
    sent, distinct = map(int, out.split())
    assert sent == distinct  # every chunk of the version was (re)sent once: base.bin's had been deleted
    store = _store(url)
    assert store.verify(full=True).problems == []
    store.get("m", str(tmp_path / "out"))
    assert (tmp_path / "out" / "base.bin").read_bytes() == base.read_bytes()


def test_a_put_paused_just_before_publishing_never_publishes_missing_chunks(tmp_path, garbage_base):
    url, base = garbage_base
    (base.parent / "new.bin").write_bytes(os.urandom(1 << 20))
    put = _start_paused(PUT_PAUSED_BEFORE_PUBLISH, url, str(base.parent), str(TTL))
    time.sleep(TTL * 1.5)  # its lease expires: gc goes ahead and deletes base.bin's chunks
    assert _store(url).gc(grace=TTL).deleted_chunks >= 16  # base.bin's, and new.bin's once older than grace
    code, out, err = _resume(put)
    assert code == 0, err
    missing_at_publish = int(err.split("missing-at-publish ")[1].split()[0])
    assert missing_at_publish == 0  # no reader could ever see the version without its chunks
    assert _store(url).verify(full=True).problems == []


@pytest.mark.parametrize("writer", ["put", "copy"])
def test_a_writer_that_publishes_after_gc_ran_and_dies_at_once_leaves_a_whole_version(tmp_path, garbage_base,
                                                                                      writer):
    """The manifest lands after a gc that started once the writer's lease expired, and the writer
    is killed before it can check anything: gc kept what the writer recorded before publishing."""
    url, base = garbage_base
    (base.parent / "new.bin").write_bytes(os.urandom(1 << 20))
    if writer == "put":
        child = _start_paused(PUT_KILLED_AFTER_A_LATE_PUBLISH, url, str(base.parent), str(TTL))
    else:  # a copy from another store, which the destination's garbage partly holds already
        source = tmp_path / "source-store"
        Store.open(str(source), cache_dir=False).put(str(base.parent), "m", chunk_size=CHUNK, pack_below=0)
        child = _start_paused(COPY_KILLED_AFTER_A_LATE_PUBLISH, url, str(source), str(TTL))
    time.sleep(TTL * 1.5)  # its lease expires: gc goes ahead while the version is not out yet
    report = _store(url).gc(grace=TTL)
    assert (report.pending_versions, report.deleted_chunks) == (1, 0)  # base.bin's reused chunks, new.bin's sent ones
    code, _, err = _resume(child)
    assert code == -signal.SIGKILL, err
    store = _store(url)
    assert store.verify(full=True).problems == []
    store.get("m@1", str(tmp_path / "out"))  # killed before it moved `latest`
    assert (tmp_path / "out" / "base.bin").read_bytes() == base.read_bytes()
    report = store.gc(grace=0)  # the dead put's record goes; the version it published keeps its chunks
    assert (report.deleted_pending, report.pending_versions, report.deleted_chunks) == (1, 0, 0)
    assert store.verify(full=True).problems == []


def test_a_gc_paused_past_its_lease_deletes_nothing_a_put_made_meanwhile(tmp_path, garbage_base):
    url, base = garbage_base
    gc = _start_paused(GC_PAUSED, url, "", str(TTL))
    time.sleep(TTL * 1.5)  # its lease expires: a put goes ahead, reusing the garbage and adding chunks
    new = tmp_path / "new.bin"
    new.write_bytes(base.read_bytes() + os.urandom(1 << 20))
    store = _store(url)
    m = store.put(str(new), "m", chunk_size=CHUNK, pack_below=0)
    assert store.last_transfer.sent_chunks == 16  # base.bin's 16 chunks were reused
    code, out, err = _resume(gc)
    assert code == 1 and "lapsed" in err and "run `cas gc` again" in err
    assert store.verify(full=True).problems == []
    store.get(f"m@{m.version}", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == new.read_bytes()


def test_a_gc_delete_that_lands_after_its_lease_lapsed_is_undone(tmp_path, garbage_base):
    """The window the lease check cannot close: gc checked its lease, then stalled before its delete
    reached the store; a put reused that chunk meanwhile. gc puts the chunk back and stops."""
    url, base = garbage_base
    gc = _start_paused(GC_PAUSED_IN_DELETE, url, "", str(TTL))
    time.sleep(TTL * 1.5)  # its lease expires: a put goes ahead, reusing every garbage chunk
    store = _store(url)
    m = store.put(str(base), "m", chunk_size=CHUNK, pack_below=0)
    assert store.last_transfer.sent_chunks == 0
    code, out, err = _resume(gc)  # its delete of one of those chunks lands now
    assert code == 1 and "lapsed" in err and "run `cas gc` again" in err
    assert store.verify(full=True).problems == []
    store.get(f"m@{m.version}", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == base.read_bytes()


def test_a_gc_delete_of_a_pack_that_lands_after_its_lease_lapsed_is_undone(tmp_path, process_shared_url):
    """The same window for a pack: a put of the same small chunks builds the same pack (its key is
    its content), finds it there and names it; gc's late move of it is undone."""
    url = process_shared_url
    base = tmp_path / "base.bin"
    base.write_bytes(os.urandom(16 * CHUNK))
    store = _store(url)
    store.put(str(base), "base", chunk_size=CHUNK)  # 64 KiB chunks: all in one pack
    store.rm("base@1")
    gc = _start_paused(GC_PAUSED_IN_DELETE, url, "", str(TTL))
    time.sleep(TTL * 1.5)  # its lease expires: a put goes ahead and finds the pack it would write
    m = store.put(str(base), "m", chunk_size=CHUNK)
    assert m.packed and store.last_transfer.sent_chunks == 0
    code, out, err = _resume(gc)  # its move of that pack lands now
    assert code == 1 and "lapsed" in err
    assert store.verify(full=True).problems == []
    store.get(f"m@{m.version}", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == base.read_bytes()


def test_a_gc_paused_after_listing_never_deletes_a_chunk_another_stopped_gc_set_aside(tmp_path, garbage_base):
    """Two stalled gcs: this one listed the versions, then stalled; a put reused the garbage; an
    older stalled gc's move of one reused chunk landed then (it died before moving it back). The
    trash entry is the chunk's only copy, and this gc's listing predates the version naming it: it
    must not delete it (the next gc puts it back)."""
    from cas.layout import chunk_key, trash_key
    url, base = garbage_base
    gc = _start_paused(GC_PAUSED, url, "", str(TTL))  # versions listed, paused in its walk of chunks/
    time.sleep(TTL * 1.5)  # its lease expires: a put goes ahead, reusing every garbage chunk
    store = _store(url)
    m = store.put(str(base), "m", chunk_size=CHUNK, pack_below=0)
    assert store.last_transfer.sent_chunks == 0
    reused = chunk_key(m.files[0].digests[0].hex())
    store.backend.move(reused, trash_key("deadgc", reused))  # the older gc's late move, never undone
    code, out, err = _resume(gc)
    assert code == 1 and "lapsed" in err
    store.gc(grace=0)  # a gc that knows the new version puts the chunk back
    assert store.verify(full=True).problems == []
    store.get(f"m@{m.version}", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == base.read_bytes()


def test_chunks_a_killed_gc_set_aside_are_put_back_if_named_and_deleted_if_not(tmp_path, local_store):
    """A gc killed between setting a chunk aside and finishing with it leaves it in trash/; the next
    gc moves it back if a version names it (a writer reused it meanwhile), else deletes it."""
    from cas.layout import trash_key
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(4 * CHUNK))
    m = local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    named = next(iter(m.files[0].digests)).hex()
    backend = local_store.backend
    backend.move(f"chunks/{named[:2]}/{named[2:4]}/{named}", trash_key("deadgc", f"chunks/{named[:2]}/{named[2:4]}/{named}"))
    backend.create(trash_key("deadgc", "chunks/00/00/" + "00" * 16), b"an unreferenced chunk")
    problems = local_store.verify().problems
    assert len(problems) == 1 and "`cas gc` puts it back" in problems[0].problem
    report = local_store.gc(grace=0)
    assert report.restored_chunks == 1
    assert [o.key for o in backend.walk("trash")] == []
    assert local_store.verify(full=True).problems == []


@pytest.mark.parametrize("pack_below", [0, DEFAULT_PACK_BELOW])
def test_a_get_paused_while_gc_and_puts_run_still_gets_its_version(tmp_path, garbage_base, pack_below):
    url, base = garbage_base
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(1 << 20))
    store = _store(url)
    store.put(str(src), "m", chunk_size=CHUNK, pack_below=pack_below)
    assert bool(store.manifest("m").packed) == bool(pack_below)
    get = _start_paused(GET_PAUSED, url, str(tmp_path / "out.bin"))
    time.sleep(TTL * 1.5)
    store.put(str(base), "other", chunk_size=CHUNK)
    store.gc(grace=0)
    code, out, err = _resume(get)
    assert code == 0, err
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert store.verify(full=True).problems == []


def test_gc_leaves_chunks_younger_than_the_grace_period(tmp_path, local_store):
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(256 * 1024))
    local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    local_store.rm("m@1")
    kept = local_store.gc(grace=3600)
    assert (kept.deleted_chunks, kept.young_chunks) == (0, 4)
    assert local_store.gc(grace=0).deleted_chunks == 4


def test_gc_leaves_packs_younger_than_the_grace_period(tmp_path, local_store):
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(256 * 1024))
    local_store.put(str(src), "m", chunk_size=CHUNK)
    local_store.rm("m@1")
    kept = local_store.gc(grace=3600)
    assert (kept.deleted_packs, kept.young_packs, kept.deleted_chunks) == (0, 1, 0)
    assert len(list(local_store.backend.walk("packs"))) == 1
    gone = local_store.gc(grace=0)
    assert (gone.deleted_packs, gone.young_packs) == (1, 0)
    assert list(local_store.backend.walk("packs")) == []


def test_a_put_paused_past_its_lease_asks_again_for_the_packs_it_reuses(tmp_path, process_shared_url):
    """The put reads v1's manifest and finds its pack present, then is paused past its lease while
    v1 is removed and gc deletes that pack: it must notice and store those chunks again, exactly
    as it re-checks chunks it skipped."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "base.bin").write_bytes(os.urandom(1 << 20))
    store = _store(process_shared_url)
    v1 = store.put(str(src), "m", chunk_size=CHUNK)
    assert len(v1.pack_ids()) == 1
    (src / "new.bin").write_bytes(os.urandom(256 << 10))
    put = _start_paused(PUT_PAUSED, process_shared_url, str(src), str(TTL), str(DEFAULT_PACK_BELOW))
    time.sleep(TTL * 1.5)  # its lease expires: v1 goes, and gc deletes v1's pack
    store.rm("m@1")
    assert store.gc(grace=TTL).deleted_packs == 1
    code, out, err = _resume(put)
    assert code == 0, err
    assert "lapsed" in err
    sent, distinct = map(int, out.split())
    assert sent == distinct  # base.bin's chunks were packed again, not pointed at in the deleted pack
    store = _store(process_shared_url)
    assert store.verify(full=True).problems == []
    store.get("m@2", str(tmp_path / "out"))
    assert (tmp_path / "out" / "base.bin").read_bytes() == (src / "base.bin").read_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_put_that_gives_up_on_its_lease_leaves_no_lease_behind(local_store, tmp_path, monkeypatch):
    """A lease taken again inside the put and then abandoned would be renewed for the life of the
    process (a notebook, a service) and keep every gc waiting."""
    from cas.leases import LeaseLost, all_leases
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(3 * CHUNK))
    monkeypatch.setattr(Lease, "intact", lambda self, margin=0.0: False)  # it lapses every time
    with pytest.raises(LeaseLost):
        local_store.put(str(src), "m", chunk_size=CHUNK)
    assert local_store.models() == []
    assert all_leases(local_store.backend) == []


def test_a_lease_that_lapsed_stays_broken_even_after_its_heartbeat_renews_it(local_store):
    clock = FakeClock()
    lease = Lease(local_store.backend, WRITER, ttl=10, clock=clock)
    lease.seq = 1
    lease._write(1)
    assert lease.intact(margin=5)
    clock.now += 6
    assert not lease.intact(margin=5)  # less than the margin left: not good enough to publish on
    lease = Lease(local_store.backend, WRITER, ttl=10, clock=clock)
    lease.seq = 1
    lease._write(1)
    clock.now += 11  # paused past its expiry...
    lease._write(2)  # ...then its heartbeat renews it as if nothing happened
    assert not lease.intact()
    with pytest.raises(Exception, match="lapsed before publishing"):
        lease.check("publishing")


def test_a_lease_of_a_dead_process_on_this_host_is_dead_at_once(local_store):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    import socket
    from cas.leases import _this_node
    host = socket.gethostname()
    node = _this_node()
    dead = LeaseInfo("locks/gc.x.00000001", "gc", "x", f"{host}:{dead_pid}", time.time() + 60, node=node)
    alive = LeaseInfo("locks/gc.y.00000001", "gc", "y", f"{host}:{os.getpid()}", time.time() + 60, node=node)
    elsewhere = LeaseInfo("locks/gc.z.00000001", "gc", "z", f"another-host:{dead_pid}", time.time() + 60, node=node)
    assert holder_is_dead(dead) and not holder_is_dead(alive) and not holder_is_dead(elsewhere)


def test_a_lease_of_another_pid_namespace_with_our_hostname_is_judged_by_its_expiry():
    """Containers on the host network (docker --network host, Kubernetes hostNetwork) share the
    hostname but not the pids: a pid absent here may be a live writer there."""
    import socket
    host = socket.gethostname()
    absent = 2 ** 22 + 12345  # above pid_max: no such process here
    other_ns = LeaseInfo("locks/writer.x.00000001", "writer", "x", f"{host}:{absent}", time.time() + 60,
                         node="another-boot/pid:[4026530000]")
    unknown = LeaseInfo("locks/writer.y.00000001", "writer", "y", f"{host}:{absent}", time.time() + 60)
    assert not holder_is_dead(other_ns) and not holder_is_dead(unknown)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_gc_waits_for_a_live_writer_in_another_pid_namespace(tmp_path):
    url = str(tmp_path / "store")
    script = textwrap.dedent("""
        import sys, time
        from cas.backends.local import LocalBackend
        from cas.leases import WRITER, Lease
        Lease(LocalBackend(sys.argv[1]), WRITER, ttl=60).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    # sh stays pid 1 of the new namespace; the writer is an ordinary process in it
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
                             f'{sys.executable} -c "$0" "$1"; true', script, url],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        store = Store.open(url, cache_dir=False)
        assert len(live_leases(store.backend)) == 1
        with pytest.raises(CasError, match="writer"):
            store.gc(wait=0.5)
    finally:
        proc.kill()
        proc.wait()


def test_a_gc_killed_with_sigkill_does_not_block_the_next_gc_on_this_host(tmp_path):
    url = str(tmp_path / "store")
    script = textwrap.dedent("""
        import os, signal, sys
        from cas.backends.local import LocalBackend
        from cas.leases import GC, Lease
        Lease(LocalBackend(sys.argv[1]), GC).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", script, url])
    store = Store.open(url, cache_dir=False)
    assert live_leases(store.backend) == []
    report = store.gc(wait=1)  # no "another garbage collection is running" for a minute
    assert report.deleted_leases == 1
