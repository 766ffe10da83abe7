"""Strong digests, verify, repair, garbage collection and the leases that make gc safe."""

import os
import threading
import time

import pytest

from cas import CasError
from cas.errors import NotFound
from cas.layout import chunk_key
from cas.leases import GC, WRITER, Lease, gc_lease, live_leases, writer_lease
from tests.conftest import write

CHUNK = 64 * 1024
ONE_OBJECT_EACH = {"pack_below": 0}  # these tests reach into chunk objects; packed chunks: tests/test_packs.py


def rand(n, seed=0):
    import random
    return random.Random(seed).randbytes(n)


def _object_path(store, digest):
    return os.path.join(store.backend.root, *chunk_key(digest.hex()).split("/"))


def _corrupt(store, digest):
    path = _object_path(store, digest)
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF
    open(path, "wb").write(bytes(data))


# -- strong digests ----------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["sha256", "blake3"])
def test_strong_digest_is_recorded_and_checked(local_store, tmp_path, algo):
    src = write(tmp_path / "d" / "a.bin", rand(300_000))
    write(tmp_path / "d" / "empty", b"")
    m = local_store.put(str(tmp_path / "d"), "m", chunk_size=CHUNK, strong_hash=algo)
    assert m.strong_hash == algo and all(len(f.strong) == 32 for f in m.files)
    local_store.get("m", str(tmp_path / "out"))
    assert (tmp_path / "out" / "a.bin").read_bytes() == src.read_bytes()


def test_unknown_strong_hash_is_refused_before_any_work(local_store, tmp_path):
    src = write(tmp_path / "a", b"x")
    with pytest.raises(ValueError, match="strong hash must be"):
        local_store.put(str(src), "m", strong_hash="md5")
    assert local_store.models() == []


# -- verify and repair -------------------------------------------------------------------------

def test_verify_names_model_version_file_and_chunk(local_store, tmp_path):
    src = write(tmp_path / "w.bin", rand(512 * 1024))
    m1 = local_store.put(str(src), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    local_store.put(str(src), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    assert local_store.verify().problems == []
    assert local_store.verify(full=True).problems == []
    d_missing, d_corrupt = m1.files[0].digests[1], m1.files[0].digests[4]
    os.unlink(_object_path(local_store, d_missing))
    _corrupt(local_store, d_corrupt)
    quick = local_store.verify()
    assert {(p.version, p.file, p.chunk, p.problem) for p in quick.problems} == {
        ("1", "w.bin", d_missing.hex(), "missing"), ("2", "w.bin", d_missing.hex(), "missing")}
    full = local_store.verify("m@1", full=True)
    assert {(p.chunk, p.problem.split(":")[0]) for p in full.problems} == {
        (d_missing.hex(), "missing"), (d_corrupt.hex(), "corrupt")}
    assert str(full.problems[0]).startswith("m@1 file 'w.bin' chunk ")


def test_repair_restores_chunks_from_a_local_copy(local_store, tmp_path):
    src = write(tmp_path / "w.bin", rand(512 * 1024))
    m = local_store.put(str(src), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    os.unlink(_object_path(local_store, m.files[0].digests[0]))
    _corrupt(local_store, m.files[0].digests[3])
    report = local_store.repair("m", str(src))
    assert report.bad_chunks == 2 and len(report.repaired) == 2 and report.unrepairable == []
    assert local_store.verify(full=True).problems == []
    local_store.get("m", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def _float_weights(n_values, seed=0):
    import random
    import struct
    rng = random.Random(seed)
    return struct.pack(f"<{n_values}f", *(rng.gauss(0.0, 0.02) for _ in range(n_values)))


def test_verify_repair_and_get_handle_a_mix_of_codecs(local_store, tmp_path):
    """Chunks stored by a zstd-only writer (every cas before the planes codec) and by auto sit side by
    side: get, verify and repair read both, and repair re-stores a chunk the way its version chose."""
    weights = _float_weights(4 * CHUNK // 4)
    old = write(tmp_path / "old.bin", weights[:2 * CHUNK])
    new = write(tmp_path / "new.bin", weights)  # shares its first two chunks with old.bin
    m_old = local_store.put(str(old), "m", chunk_size=CHUNK, codec="zstd", **ONE_OBJECT_EACH)
    m_new = local_store.put(str(new), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    codecs = local_store.stats("m")["codecs"]
    assert (codecs["zstd"]["chunks"], codecs["planes"]["chunks"]) == (2, 2)
    assert local_store.verify(full=True).problems == []
    local_store.get("m@2", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == weights
    _corrupt(local_store, m_new.files[0].digests[3])  # a planes chunk
    _corrupt(local_store, m_old.files[0].digests[0])  # a zstd chunk
    bad = {m_new.files[0].digests[3].hex(), m_old.files[0].digests[0].hex()}
    assert {p.chunk for p in local_store.verify(full=True).problems} == bad  # (the zstd one in both versions)
    assert set(local_store.repair("m@2", str(new)).repaired) == bad
    assert local_store.verify(full=True).problems == []
    assert local_store.stats("m")["codecs"]["planes"]["chunks"] == 3  # repaired as m@2's put would store it


def test_repair_from_a_copy_that_lacks_the_bytes_says_so(local_store, tmp_path):
    src = write(tmp_path / "w.bin", rand(256 * 1024))
    m = local_store.put(str(src), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    os.unlink(_object_path(local_store, m.files[0].digests[0]))
    other = write(tmp_path / "other.bin", rand(256 * 1024, seed=5))
    report = local_store.repair("m", str(other))
    assert report.unrepairable == [m.files[0].digests[0].hex()]
    with pytest.raises(NotFound, match=r"cannot repair from '.*nowhere': no such file"):
        local_store.repair("m", str(tmp_path / "nowhere"))


# -- gc ----------------------------------------------------------------------------------------

def test_gc_deletes_only_what_no_version_references(local_store, tmp_path):
    a = write(tmp_path / "a", rand(256 * 1024, 1))
    b = write(tmp_path / "b", rand(256 * 1024, 2))
    local_store.put(str(a), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    local_store.put(str(b), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    local_store.put(str(a), "other", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    local_store.rm("m@2")
    dry = local_store.gc(dry_run=True, grace=0)
    assert dry.deleted_chunks == 4 and dry.deleted_bytes >= 256 * 1024
    assert local_store.verify().chunks == 4  # dry run deleted nothing
    assert len(list(local_store.backend.walk("chunks"))) == 8
    young = local_store.gc()  # garbage younger than the lease TTL waits for a later gc
    assert (young.deleted_chunks, young.young_chunks) == (0, 4)
    assert len(list(local_store.backend.walk("chunks"))) == 8
    real = local_store.gc(grace=0)
    assert real.deleted_chunks == 4
    assert len(list(local_store.backend.walk("chunks"))) == 4
    # every chunk went through trash/ and out again; no run leaves a directory of its own there
    assert local_store.backend.list("trash") == []
    assert local_store.verify(full=True).problems == []
    local_store.get("m@1", str(tmp_path / "m1"))
    assert (tmp_path / "m1").read_bytes() == a.read_bytes()


def test_gc_refuses_to_run_when_a_manifest_is_unreadable(local_store, tmp_path):
    from cas.layout import manifest_key
    src = write(tmp_path / "a", b"x" * 1000)
    local_store.put(str(src), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    local_store.backend.create(manifest_key("m", "2"), b"garbage")
    with pytest.raises(CasError, match="gc stopped before deleting anything: m@2"):
        local_store.gc()
    assert len(list(local_store.backend.walk("chunks"))) == 1


def test_gc_keeps_what_a_recorded_version_names_until_the_record_is_stale(local_store, tmp_path):
    """A record of a version being published (cas.intents) keeps its chunks while its writer may
    still publish: one on another host for MAX_AGE; a damaged one stops gc, naming it."""
    import msgpack
    from cas import intents
    from cas.layout import PENDING
    from cas.manifest import pack
    src = write(tmp_path / "a", rand(4 * CHUNK, 3))
    m = local_store.put(str(src), "m", chunk_size=CHUNK, **ONE_OBJECT_EACH)
    local_store.rm("m@1")  # its chunks are garbage now, but a paused writer on another host recorded them
    record = msgpack.packb({"host": "elsewhere:123", "manifest": pack(m)}, use_bin_type=True)
    local_store.backend.create(f"{PENDING}/{int(time.time() * 1000):013d}-paused", record)
    report = local_store.gc(grace=0)
    assert (report.pending_versions, report.deleted_chunks) == (1, 0)
    old = int((time.time() - intents.MAX_AGE - 60) * 1000)
    local_store.backend.move(f"{PENDING}/{next(o.key for o in local_store.backend.walk(PENDING)).split('/')[-1]}",
                             f"{PENDING}/{old:013d}-paused-for-a-week")
    report = local_store.gc(grace=0)
    assert (report.deleted_pending, report.deleted_chunks) == (1, 4)
    # names no clock makes: a stamp over a day ahead would never age, "²" is a digit int() refuses
    ahead = int((time.time() + 2 * 86400) * 1000)
    for name in (f"{ahead:013d}-from-the-future", "²-odd"):
        local_store.backend.create(f"{PENDING}/{name}", record)
    assert local_store.gc(grace=0).deleted_pending == 2
    for name, body in (("damaged", b"\x93junk"), ("not-a-manifest", msgpack.packb({"host": "h:1", "manifest": 7}))):
        key = f"{PENDING}/{int(time.time() * 1000):013d}-{name}"
        local_store.backend.create(key, body)
        with pytest.raises(CasError, match=f"gc stopped before deleting anything: {key} .* remove it if no put"):
            local_store.gc()
        local_store.backend.delete(key)


def test_gc_cleans_staging_and_expired_leases(local_store):
    local_store.backend.create("tmp/0001700000000-leftover-from-a-crash-in-2023", b"x")
    local_store.backend.create("tmp/9999999999999-a-write-in-progress", b"x")
    dead = Lease(local_store.backend, WRITER, ttl=0.01).acquire()
    dead._stop.set()  # a writer killed with -9: its lease is never renewed nor released
    time.sleep(0.05)
    report = local_store.gc(wait=2)
    assert report.deleted_staging == 1 and report.deleted_leases == 1
    assert list(local_store.backend.walk("locks")) == []
    assert [o.key for o in local_store.backend.walk("tmp")] == ["tmp/9999999999999-a-write-in-progress"]


def test_gc_waits_for_running_writers_and_writers_wait_for_gc(local_store):
    backend = local_store.backend
    writer = writer_lease(backend, ttl=5)
    with pytest.raises(CasError, match="writer"):
        gc_lease(backend, wait=0.3, poll=0.05)  # a live writer keeps gc out
    assert live_leases(backend, GC) == []  # and the failed gc withdrew its lease
    writer.release()
    gc = gc_lease(backend, ttl=5)
    with pytest.raises(CasError, match="garbage collection"):
        writer_lease(backend, wait=0.3, poll=0.05)  # a running gc keeps writers out
    released = threading.Timer(0.3, gc.release)
    released.start()
    writer_lease(backend, wait=5, poll=0.05).release()  # ...until it ends
    released.join()


def test_leases_are_renewed_by_their_heartbeat(local_store):
    lease = Lease(local_store.backend, WRITER, ttl=0.4).acquire()
    time.sleep(1.0)  # > 2 ttl: only renewal keeps it alive
    assert [l.owner for l in live_leases(local_store.backend, WRITER)] == [lease.owner]
    lease.release()
    assert live_leases(local_store.backend) == []


def test_concurrent_put_and_gc_never_lose_a_chunk(local_store, tmp_path):
    """The race gc must not lose: a put dedups against a chunk only an rm'd version used."""
    shared = rand(256 * 1024, 7)
    src = write(tmp_path / "s", shared)
    local_store.put(str(src), "m", chunk_size=CHUNK)
    local_store.rm("m@1")  # its chunks are garbage now...
    errors = []

    def put_again():
        try:
            for _ in range(5):
                local_store.put(str(src), "m", chunk_size=CHUNK)  # ...until a put reuses them
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=put_again)
    t.start()
    for _ in range(5):
        local_store.gc(wait=10, grace=0)
    t.join()
    assert errors == []
    assert local_store.verify(full=True).problems == []


def test_verify_on_a_missing_ref_names_it(local_store):
    with pytest.raises(NotFound):
        local_store.verify("ghost@1")


def test_map_ordered_yields_in_order_with_bounded_look_ahead_and_stops_on_error():
    from cas.transfer import map_ordered
    started = []

    def slow_square(i):
        started.append(i)
        time.sleep(0.01 * (i % 3))
        if i == 7:
            raise ValueError("chunk 7")
        return i * i

    results = map_ordered(slow_square, range(100), 2, in_flight=3)
    assert [next(results) for _ in range(5)] == [0, 1, 4, 9, 16]
    assert max(started) <= 4 + 3  # never more than in_flight ahead of what was consumed
    with pytest.raises(ValueError, match="chunk 7"):
        list(results)
    assert max(started) < 20  # the rest was cancelled, not computed
