"""Packs: small chunks written together into pack objects, read back by range, on every backend.

Each test can fail: they count objects and bytes in the store, damage packs where the manifest
says they are, and check what get, verify, repair, gc, copy and stats make of it.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import replace

import msgpack
import pytest

from cas import Store
from cas import manifest as manifest_module
from cas.codec import encoded_capacity
from cas.errors import BadManifest, CasError, CorruptChunk, MissingChunk
from cas.layout import chunk_key, pack_key
from cas.manifest import (
    FORMAT,
    FORMAT_PACKS,
    MAX_PACK_BYTES,
    FileEntry,
    Manifest,
    PackedChunk,
    locate,
    pack,
    unpack,
)
from cas.packing import (
    DEFAULT_PACK_BELOW,
    DEFAULT_PACK_SIZE,
    PackBuilder,
    Packing,
    simulate,
    starts_new_pack,
)
from tests.conftest import flip_byte, write

KIB = 1024
MIB = 1 << 20


def _rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _model_dir(root, seed: int = 0, n_small: int = 12, big: int = 3 * MIB, changed: tuple[int, ...] = ()):
    """A SavedModel-like directory: many small files (small tensors, metadata) and one large one."""
    for i in range(n_small):
        write(root / "vars" / f"t{i:02d}.bin", _rand(20 * KIB + 97 * i, seed * 1000 + i + (7 if i in changed else 0)))
    write(root / "weights.bin", _rand(big, seed))
    write(root / "saved_model.pb", b"graph " * 3000)
    return root


def _recording_reads(store, monkeypatch) -> list[str]:
    """The keys of every ``backend.read`` of ``store`` from now on, in order."""
    reads: list[str] = []
    real_read = store.backend.read

    def read(key, offset=0, length=None):
        reads.append(key)
        return real_read(key, offset, length)

    monkeypatch.setattr(store.backend, "read", read)
    return reads


def _objects(store) -> tuple[int, int]:
    return len(list(store.backend.walk("chunks"))), len(list(store.backend.walk("packs")))


def _files(root) -> dict[str, bytes]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return out


def _same_tree(a, b) -> bool:
    return _files(a) == _files(b)


# -- end to end, on every backend ------------------------------------------------------------------

def test_small_chunks_go_in_packs_and_read_back_on_every_backend(store, tmp_path):
    src = _model_dir(tmp_path / "v1")
    m = store.put(str(src), "m", chunk_size=1 * MIB)
    small = {d for d, n in m.chunk_lengths().items() if n < DEFAULT_PACK_BELOW}
    assert set(m.packed) == small and len(small) >= 13  # every small file's chunk (the 1 MiB pieces stay alone)
    chunks, packs = _objects(store)
    assert (chunks, packs) == (3, 1)  # 3 one-MiB chunks on their own, the rest in one pack
    assert store.last_transfer.sent_packs == 1 and store.last_transfer.sent_chunks == len(m.chunk_lengths())
    (pack_obj,) = store.backend.walk("packs")
    assert pack_obj.size == sum(at.length for at in m.packed.values())  # chunk objects back to back, nothing else
    assert msgpack.unpackb(store.backend.read(f"manifests/m/{m.version}.msgpack"))["format"] == FORMAT_PACKS
    store.get("m", str(tmp_path / "back"))
    assert _same_tree(src, tmp_path / "back")
    assert store.verify(full=True).problems == []
    stats = store.stats("m")
    assert (stats["objects"], stats["packs"]) == (4, 1)
    assert stats["stored_bytes"] == sum(o.size for p in ("chunks", "packs") for o in store.backend.walk(p))


def test_pack_below_zero_stores_one_object_per_chunk_in_the_old_format(local_store, tmp_path):
    src = _model_dir(tmp_path / "v1")
    m = local_store.put(str(src), "m", chunk_size=1 * MIB, pack_below=0)
    assert m.packed == {} and _objects(local_store) == (len(m.chunk_lengths()), 0)
    raw = local_store.backend.read(f"manifests/m/{m.version}.msgpack")
    assert msgpack.unpackb(raw)["format"] == FORMAT and "packs" not in msgpack.unpackb(raw)


def test_a_fine_tune_reuses_the_packed_small_chunks_of_the_version_before(local_store, tmp_path):
    v1 = _model_dir(tmp_path / "v1")
    v2 = _model_dir(tmp_path / "v2", changed=(4,))  # one small tensor changed
    m1 = local_store.put(str(v1), "m", chunk_size=1 * MIB)
    before = _objects(local_store)
    m2 = local_store.put(str(v2), "m", chunk_size=1 * MIB)
    t = local_store.last_transfer
    new = set(m2.chunk_lengths()) - set(m1.chunk_lengths())
    assert len(new) == 1 and t.sent_chunks == 1 and t.sent_packs == 1
    assert t.sent_stored_bytes == m2.packed[new.pop()].length  # exactly the changed tensor's object
    assert t.reused_packed_chunks == len(m2.packed) - 1
    assert _objects(local_store) == (before[0], before[1] + 1)
    assert {d: at for d, at in m2.packed.items() if d in m1.packed} == \
        {d: at for d, at in m1.packed.items() if d in m2.packed}  # pointed at v1's pack, not copied
    local_store.get("m@2", str(tmp_path / "back"))
    assert _same_tree(v2, tmp_path / "back")
    again = local_store.put(str(v2), "m", chunk_size=1 * MIB)  # nothing new at all
    assert (local_store.last_transfer.sent_chunks, local_store.last_transfer.sent_packs) == (0, 0)
    assert again.packed == m2.packed


def test_a_put_killed_after_its_packs_sends_none_of_them_again(local_store, tmp_path, monkeypatch):
    src = _model_dir(tmp_path / "v1")
    real_publish = local_store._publish

    def killed(draft, **kwargs):
        raise KeyboardInterrupt  # the process dies between its packs and its manifest
    monkeypatch.setattr(local_store, "_publish", killed)
    with pytest.raises(KeyboardInterrupt):
        local_store.put(str(src), "m", chunk_size=1 * MIB)
    assert local_store.versions("m") == [] and _objects(local_store) == (3, 1)
    monkeypatch.setattr(local_store, "_publish", real_publish)
    m = local_store.put(str(src), "m", chunk_size=1 * MIB)
    assert local_store.last_transfer.sent_packs == 0 and local_store.last_transfer.sent_chunks == 0
    assert _objects(local_store) == (3, 1) and len(m.pack_ids()) == 1  # the same pack: content-addressed


def test_packs_are_bounded_and_cut_by_one_rule():
    builder = PackBuilder(100, lambda data: data[:4].ljust(16, b"\0"))
    done = [builder.add(bytes([i]) * 16, bytes([i]) * 40) for i in range(5)]
    finished = [p for p in done if p] + [builder.finish()]
    assert [len(p.data) for p in finished] == [80, 80, 40]
    assert all(len(p.data) <= 100 for p in finished)
    assert [sorted(at.offset for at in p.members.values()) for p in finished] == [[0, 40], [0, 40], [0]]
    assert not starts_new_pack(0, 500, 100)  # an object larger than a pack still gets one of its own
    assert starts_new_pack(60, 41, 100) and not starts_new_pack(60, 40, 100)
    with pytest.raises(ValueError):
        Packing(pack_below=2 * DEFAULT_PACK_SIZE)
    with pytest.raises(ValueError):
        Packing(pack_size=2 * DEFAULT_PACK_SIZE)  # copy would take such a pack for a damaged one
    with pytest.raises(ValueError):
        Packing(pack_below=-1)


def test_coalesced_reads_fetch_adjacent_packed_chunks_in_one_request(local_store, tmp_path, monkeypatch):
    src = tmp_path / "v1"
    for i in range(30):
        write(src / f"t{i:02d}.bin", _rand(10 * KIB + i, i))
    m = local_store.put(str(src), "m", chunk_size=1 * MIB)
    assert len(m.packed) == 30
    reads = _recording_reads(local_store, monkeypatch)
    local_store.get("m", str(tmp_path / "back"))
    assert _same_tree(src, tmp_path / "back")
    assert sum(k.startswith("packs/") for k in reads) == 1  # one range for the 30 chunks, not 30
    reads.clear()
    assert local_store.verify(full=True).problems == []
    assert sum(k.startswith("packs/") for k in reads) == 1  # verify --full reads them the same way


def test_a_put_checks_the_packed_chunks_it_reuses_with_one_read_per_pack(local_store, tmp_path, monkeypatch):
    """A fine-tune's unchanged small tensors are read back before they are pointed at: on WebHDFS or
    S3 each read is a request, so adjacent ones are read as one range."""
    m1 = local_store.put(str(_model_dir(tmp_path / "v1", n_small=30)), "m", chunk_size=1 * MIB)
    reads = _recording_reads(local_store, monkeypatch)
    v2 = _model_dir(tmp_path / "v2", n_small=30, changed=(5,))
    m2 = local_store.put(str(v2), "m", chunk_size=1 * MIB)
    reused = [d for d, at in m2.packed.items() if m1.packed.get(d) == at]
    assert len(reused) >= 28  # every unchanged small chunk pointed at, not stored again
    assert sum(k.startswith("packs/") for k in reads) <= 2 * len(m1.pack_ids())  # not one per reused chunk
    local_store.get("m@2", str(tmp_path / "back"))
    assert _same_tree(v2, tmp_path / "back")


# -- damage: get falls back, verify names the pack, repair restores ------------------------------

def test_a_missing_pack_is_named_by_get_and_verify_and_repair_fixes_it(local_store, tmp_path):
    src = _model_dir(tmp_path / "v1")
    m = local_store.put(str(src), "m", chunk_size=1 * MIB)
    (pid,) = m.pack_ids()
    local_store.backend.delete(pack_key(pid.hex()))
    with pytest.raises(MissingChunk, match=f"its pack {pack_key(pid.hex())} is missing"):
        local_store.get("m", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    problems = local_store.verify().problems
    assert len(problems) == len(m.packed)
    assert all(f"pack {pack_key(pid.hex())} is missing" in p.problem for p in problems)
    assert {p.chunk for p in local_store.verify(full=True).problems} == {d.hex() for d in m.packed}
    lost = local_store.stats()
    assert (lost["missing_chunks"], lost["packs"]) == (len(m.packed), 0)
    report = local_store.repair("m", str(src))
    assert report.bad_chunks == len(m.packed) and len(report.repaired) == len(m.packed) and not report.unrepairable
    assert _objects(local_store) == (3 + len(m.packed), 0)  # written as objects of their own: the manifest is immutable
    assert local_store.verify(full=True).problems == []
    # cas stats counts what the store holds now: the repaired objects, nothing missing
    stats = local_store.stats()
    assert (stats["missing_chunks"], stats["packs"], stats["objects"]) == (0, 0, 3 + len(m.packed))
    assert stats["stored_bytes"] == stats["all_chunk_objects_bytes"]
    local_store.get("m", str(tmp_path / "back"))
    assert _same_tree(src, tmp_path / "back")


def test_get_falls_back_to_a_chunk_object_when_its_pack_is_gone(local_store, tmp_path):
    src = _model_dir(tmp_path / "v1")
    m = local_store.put(str(src), "m", chunk_size=1 * MIB)
    local_store.put(str(src), "other", chunk_size=1 * MIB, pack_below=0)  # the same chunks, on their own
    for pid in m.pack_ids():
        local_store.backend.delete(pack_key(pid.hex()))
    local_store.get("m@1", str(tmp_path / "back"))
    assert _same_tree(src, tmp_path / "back")
    assert local_store.verify(full=True).problems == []  # a fallback is a good copy


def test_a_corrupt_packed_chunk_is_caught_reported_and_repaired(local_store, tmp_path):
    src = _model_dir(tmp_path / "v1")
    m = local_store.put(str(src), "m", chunk_size=1 * MIB)
    victim = next(iter(m.packed))
    flip_byte(local_store.backend.root, m, victim)
    where = locate(m, victim)
    with pytest.raises(CorruptChunk, match=f"chunk {victim.hex()}.*pack {where.key}"):
        local_store.get("m", str(tmp_path / "out"))
    assert local_store.verify().problems == []  # present: only a full verify reads it
    (problem,) = local_store.verify(full=True).problems
    assert problem.chunk == victim.hex() and where.key in problem.problem and problem.problem.startswith("corrupt")
    assert local_store.repair("m", str(src)).repaired == [victim.hex()]
    assert local_store.verify(full=True).problems == []
    local_store.get("m", str(tmp_path / "back"))
    assert _same_tree(src, tmp_path / "back")


# -- gc -------------------------------------------------------------------------------------------

def test_gc_keeps_referenced_packs_and_deletes_the_others_whole(local_store, tmp_path):
    v1 = _model_dir(tmp_path / "v1")
    v2 = _model_dir(tmp_path / "v2", changed=(4,))
    m1 = local_store.put(str(v1), "m", chunk_size=1 * MIB)
    m2 = local_store.put(str(v2), "m", chunk_size=1 * MIB)
    assert len(m2.pack_ids()) == 2 and m1.pack_ids() < m2.pack_ids()  # v2 reads v1's pack and its own
    local_store.rm("m@1")
    kept = local_store.gc(grace=0)
    assert (kept.deleted_packs, kept.referenced_packs) == (0, 2)  # v1's pack still serves v2
    local_store.rm("m@2")
    dry = local_store.gc(dry_run=True, grace=0)
    assert dry.deleted_packs == 2 and _objects(local_store)[1] == 2
    young = local_store.gc()
    assert (young.deleted_packs, young.young_packs) == (0, 2)
    gone = local_store.gc(grace=0)
    assert gone.deleted_packs == 2 and _objects(local_store) == (0, 0)
    assert gone.deleted_bytes > 100 * KIB


# -- copy -----------------------------------------------------------------------------------------

def test_copy_sends_the_packs_a_version_reads_and_only_those_the_destination_lacks(tmp_path, s3_server):
    v1 = _model_dir(tmp_path / "v1")
    v2 = _model_dir(tmp_path / "v2", changed=(4,))
    with Store.open(str(tmp_path / "a"), cache_dir=False) as a, \
            Store.open(s3_server.store_url(prefix=uuid.uuid4().hex[:8]), cache_dir=False) as b:
        a.put(str(v1), "m", chunk_size=1 * MIB)
        m2 = a.put(str(v2), "m", chunk_size=1 * MIB)
        first = a.copy("m@1", b)
        assert first.sent_packs == 1 and first.sent_chunks == first.chunks
        second = a.copy("m@2", b)
        assert (second.sent_packs, second.sent_chunks) == (1, 1)  # v2's own pack; v1's is there already
        assert len(list(b.backend.walk("packs"))) == 2
        assert b.manifest("m@2") == m2
        b.get("m@2", str(tmp_path / "back"))
        assert _same_tree(v2, tmp_path / "back")
        assert b.verify(full=True).problems == []


def test_copy_of_a_version_whose_pack_was_lost_sends_its_repaired_chunks(tmp_path):
    src = _model_dir(tmp_path / "v1")
    with Store.open(str(tmp_path / "a"), cache_dir=False) as a, Store.open(str(tmp_path / "b"), cache_dir=False) as b:
        m = a.put(str(src), "m", chunk_size=1 * MIB)
        (pid,) = m.pack_ids()
        a.backend.delete(pack_key(pid.hex()))
        a.repair("m", str(src))
        report = a.copy("m", b)
        assert report.sent_packs == 0 and b.backend.missing([pack_key(pid.hex())])
        b.get("m@1", str(tmp_path / "back"))
        assert _same_tree(src, tmp_path / "back")
        assert b.verify(full=True).problems == []


# -- the dedup prediction counts packs exactly ------------------------------------------------------

def test_the_dedup_prediction_counts_pack_objects_and_bytes_exactly(local_store, tmp_path):
    from cas.dedup import LOCAL_MODEL, analyze_local
    versions = [_model_dir(tmp_path / f"v{i}", changed=tuple(range(i))) for i in range(1, 4)]
    predicted = analyze_local([str(v) for v in versions], [1 * MIB], n_workers=2)["reports"][0]
    for v in versions:
        local_store.put(str(v), "m", chunk_size=1 * MIB)
    chunks, packs = _objects(local_store)
    on_disk = sum(o.size for p in ("chunks", "packs") for o in local_store.backend.walk(p))
    assert (predicted["objects"], predicted["packs"], predicted["stored_bytes"]) == (chunks + packs, packs, on_disk)
    stats = local_store.stats("m")
    assert (stats["objects"], stats["packs"], stats["stored_bytes"]) == (chunks + packs, packs, on_disk)
    # and each version's manifest, to the byte, once the fields a local analysis cannot know are alike
    stored = [replace(local_store.manifest(f"m@{i}"), model=LOCAL_MODEL, version=row["version"], created=0.0)
              for i, row in enumerate(predicted["versions"], 1)]
    assert [row["manifest_bytes"] for row in predicted["versions"]] == [len(pack(m)) for m in stored]
    off = analyze_local([str(v) for v in versions], [1 * MIB], pack_below=0, n_workers=2)["reports"][0]
    assert off["packs"] == 0 and off["objects"] == off["unique_chunks"] > predicted["objects"]


def test_simulated_puts_reuse_the_packs_of_recent_versions_only():
    def version(label, digests):
        return Manifest(model="m", version=label, kind="file", chunk_size=8, level=3,
                        files=(FileEntry("f", 8 * len(digests), 0o644, tuple(digests), (8,) * len(digests)),))
    a, b, c = (bytes([i]) * 16 for i in range(3))
    series = [version("1", [a, b]), version("2", [a]), version("3", [a, b, c])]
    out, sizes = simulate(series, lambda d, n: 30, Packing(pack_below=100, pack_size=1000),
                          lambda vi, k: f"{vi}-{k}".encode().ljust(16, b"\0"), window=1)
    assert out[2].packed[b].pack != out[0].packed[b].pack  # b skipped a version: outside a window of 1
    assert out[2].packed[a] == out[0].packed[a] and len(sizes) == 2
    out, _ = simulate(series, lambda d, n: 30, Packing(pack_below=100, pack_size=1000),
                      lambda vi, k: f"{vi}-{k}".encode().ljust(16, b"\0"), window=8)
    assert out[2].packed[b] == out[0].packed[b]


# -- the manifest: format, hostile pack tables ---------------------------------------------------

D1, D2 = bytes(range(16)), bytes(range(1, 17))
PID = bytes(range(100, 116))


def _packed_manifest(**packed) -> Manifest:
    files = (FileEntry("a", 300, 0o644, (D1, D2), (100, 200)),)
    return Manifest(model="m", version="1", kind="file", chunk_size=200, level=3, files=files,
                    packed=packed or {D1: PackedChunk(PID, 0, 60), D2: PackedChunk(PID, 60, 90)})


def _doc(m: Manifest | None = None) -> dict:
    doc = msgpack.unpackb(pack(m or _packed_manifest()), raw=False)
    doc.pop("check")  # edited by hand: a hostile writer leaves no checksum
    return doc


def test_a_packed_manifest_round_trips_and_locates_its_chunks():
    m = _packed_manifest()
    back = unpack(pack(m))
    assert back == m and back.packed == m.packed
    where = locate(back, D2)
    assert (where.key, where.offset, where.length, where.in_pack) == (pack_key(PID.hex()), 60, 90, True)
    own = locate(Manifest(model="m", version="1", kind="file", chunk_size=200, level=3, files=m.files), D1)
    assert (own.key, own.length, own.in_pack) == (chunk_key(D1.hex()), None, False)


def test_a_cas_that_reads_only_format_1_refuses_a_packed_manifest_by_name(monkeypatch):
    """What cas before packs does: its reader knew format 1 only (FORMATS == (1,))."""
    monkeypatch.setattr(manifest_module, "FORMATS", (1,))
    with pytest.raises(BadManifest, match=r"has format 2; this cas reads .*\(upgrade cas\?\)"):
        unpack(pack(_packed_manifest()))
    plain = Manifest(model="m", version="1", kind="file", chunk_size=200, level=3, files=_packed_manifest().files)
    assert unpack(pack(plain)) == plain  # a version without packs stays readable by it


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["packs"].__setitem__("offset", [MAX_PACK_BYTES, 0]), "outside the largest pack"),
    (lambda d: d["packs"].__setitem__("offset", [-1, 0]), "offset -1"),
    (lambda d: d["packs"].__setitem__("length", [1 << 40, 90]), "impossible for a 100-byte chunk"),
    (lambda d: d["packs"].__setitem__("length", [16, 90]), "impossible for a 100-byte chunk"),
    (lambda d: d["packs"].__setitem__("pack", [1, 0]), "pack #1, which it does not list"),
    (lambda d: d["packs"].__setitem__("pack", ["../../etc", 0]), "which it does not list"),
    (lambda d: d["packs"].__setitem__("ids", b"../../../etc/passwd"), "bad id list"),
    (lambda d: d["packs"].__setitem__("chunks", D1 + D1), "twice"),
    (lambda d: d["packs"].__setitem__("chunks", D1 + bytes(16)), "which no file of this version uses"),
    (lambda d: d["packs"].__setitem__("offset", [0]), "not as many packs, offsets and lengths"),
    (lambda d: d["packs"].__setitem__("ids", PID + bytes(16)), "lists a pack that holds none of its chunks"),
    (lambda d: d.__setitem__("packs", [1, 2]), "packs is not a map"),
    (lambda d: d.__setitem__("format", 1), "format 1 lists packs"),
    (lambda d: d.pop("packs"), "format 2 lists no packs"),
])
def test_hostile_pack_tables_are_refused_in_one_line(change, message):
    doc = _doc()
    change(doc)
    with pytest.raises(BadManifest, match=message) as info:
        unpack(msgpack.packb(doc, use_bin_type=True), name="manifest of m@1")
    assert "\n" not in str(info.value) and str(info.value).startswith("manifest of m@1")


def test_a_pack_table_claiming_huge_counts_does_not_allocate():
    doc = _doc()
    doc["packs"]["offset"] = [0] * 3
    with pytest.raises(BadManifest):
        unpack(msgpack.packb(doc, use_bin_type=True))
    raw = pack(_packed_manifest())
    # the pack table's chunk list replaced by a header announcing 4 GiB of digests, with no body
    at = raw.index(b"chunks") + len(b"chunks")
    hostile = raw[:at] + b"\xc6\xff\xff\xff\xff"
    with pytest.raises(BadManifest, match="larger than the format allows|not valid msgpack"):
        unpack(hostile)


def test_keys_from_a_pack_table_never_leave_the_store_root():
    m = unpack(pack(_packed_manifest()))
    for d in m.packed:
        key = locate(m, d).key
        assert key.startswith("packs/") and ".." not in key.split("/") and all(c in "0123456789abcdefpacks/" for c in key)


def test_a_store_refuses_a_version_whose_pack_table_is_hostile(local_store, tmp_path):
    src = _model_dir(tmp_path / "v1", n_small=3, big=10)
    m = local_store.put(str(src), "m", chunk_size=1 * MIB)
    doc = _doc(m)
    doc["packs"]["length"] = [1 << 30] * len(doc["packs"]["length"])
    path = os.path.join(local_store.backend.root, "manifests", "m", "1.msgpack")
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(msgpack.packb(doc, use_bin_type=True))
    with pytest.raises(BadManifest, match="stored length of 1073741824"):
        local_store.get("m", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# -- what each send round decides (cas.store._Sends), against a store that answers missing() --------

class _Answers:
    """A backend that only answers ``missing``: the keys in ``present`` exist."""

    def __init__(self, present: set[str]) -> None:
        self.present = present

    def missing(self, keys):
        return {k for k in keys if k not in self.present}


def test_each_send_round_reuses_only_packs_the_store_still_has():
    from cas.localfs import SourceFile
    from cas.store import _Sends
    from cas.transfer import Piece

    source = SourceFile("/nonexistent", "f", 3 * MIB, 0o644)  # never read: plan_round only decides
    small, large, own = (bytes([i]) * 16 for i in range(3))
    pieces = {small: Piece(source, 0, 100), large: Piece(source, 100, 2 * MIB), own: Piece(source, 0, 200)}
    reused = PackedChunk(PID, 0, 116)
    sent: dict = {}
    located: dict = {}
    sends = _Sends(pieces, Packing(), {small: reused}, located, sent)
    present = {pack_key(PID.hex()), chunk_key(own.hex())}
    to_send, to_pack = sends.plan_round(_Answers(present))
    assert [d for d, _ in to_send] == [large] and to_pack == []  # small: in v1's pack; own: an object of its own
    assert located == {small: reused}
    # the pack went (gc, while this put's lease had lapsed): the next round packs the chunk again
    to_send, to_pack = sends.plan_round(_Answers({chunk_key(own.hex()), chunk_key(large.hex())}))
    assert to_send == [] and [d for d, _ in to_pack] == [small] and small not in located
    # once the manifest is out its pack table is fixed: a chunk whose pack vanished gets its own object
    located[small] = reused
    sends.frozen = True
    to_send, to_pack = sends.plan_round(_Answers({chunk_key(own.hex()), chunk_key(large.hex())}))
    assert [d for d, _ in to_send] == [small] and to_pack == [] and located[small] == reused
    to_send, to_pack = sends.plan_round(_Answers(present | {chunk_key(large.hex())}))
    assert to_send == [] and to_pack == []


def test_a_run_of_packed_chunks_found_locally_is_placed_one_chunk_at_a_time(local_store, tmp_path, monkeypatch):
    """Small chunks that compress well make a run of one 8 MiB read hold far more raw bytes: chunks
    taken from a local copy must be written out one by one, not gathered for the whole run."""
    import tracemalloc

    import cas.store
    src = tmp_path / "v1"
    for i in range(48):
        write(src / f"z{i:02d}.bin", bytes([i]) * (512 * KIB))  # 24 MiB raw, a few KiB stored
    m = local_store.put(str(src), "m", chunk_size=1 * MIB)
    assert len(m.packed) == 48 and len(m.pack_ids()) == 1
    local_store.get("m", str(tmp_path / "first"))  # the cache remembers this copy
    real_download, peaks = cas.store.download_chunks, []

    def download(*args, **kwargs):
        tracemalloc.start()
        try:
            return real_download(*args, **kwargs)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    monkeypatch.setattr(cas.store, "download_chunks", download)
    local_store.get("m", str(tmp_path / "second"))
    assert local_store.last_transfer.reused_bytes == 48 * 512 * KIB  # every chunk from the first copy
    assert peaks[0] < 8 * MIB, f"{peaks[0] / MIB:.1f} MiB held"
    assert _same_tree(src, tmp_path / "second")


def test_copy_never_holds_more_of_a_pack_than_a_put_writes(tmp_path):
    """A pack object grown far past any pack a put writes (damage, or a hostile store) is not read
    whole by copy: the version's chunks go on their own, read from their ranges."""
    import tracemalloc
    src = _model_dir(tmp_path / "v1", n_small=4, big=10)
    with Store.open(str(tmp_path / "a"), cache_dir=False) as a, Store.open(str(tmp_path / "b"), cache_dir=False) as b:
        m = a.put(str(src), "m", chunk_size=1 * MIB)
        (pid,) = m.pack_ids()
        path = os.path.join(str(tmp_path / "a"), *pack_key(pid.hex()).split("/"))
        os.chmod(path, 0o644)
        os.truncate(path, 200 * MIB)  # sparse: the chunks stay valid at their offsets
        tracemalloc.start()
        try:
            report = a.copy("m", b)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # (a manifest read asks the local backend for up to 64 MiB, which tracemalloc counts whole)
        assert peak < 100 * MIB, f"{peak / MIB:.0f} MiB held"
        assert report.sent_packs == 0 and report.sent_chunks == len(m.chunk_lengths())
        b.get("m@1", str(tmp_path / "back"))
        assert _same_tree(src, tmp_path / "back")


# -- a put never trusts an older version's pack table blindly (review findings) ------------------

def _rewrite_manifest(store, model, version, doc):
    path = os.path.join(store.backend.root, "manifests", model, f"{version}.msgpack")
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(msgpack.packb(doc, use_bin_type=True))


def test_a_damaged_offset_in_an_older_pack_table_is_not_copied_into_a_new_version(local_store, tmp_path):
    """v1's table has two entries swapped (bit rot, a buggy writer): a put of the same files must
    not point v2 at those ranges, which hold the other chunk's bytes."""
    src = tmp_path / "v"
    write(src / "a.bin", os.urandom(20 * KIB))
    write(src / "b.bin", os.urandom(20 * KIB))  # same size and incompressible: same stored length
    m1 = local_store.put(str(src), "m", codec="raw")
    assert len(m1.packed) == 2
    doc = msgpack.unpackb(pack(m1), raw=False)
    doc.pop("check")  # edited by hand below: a hostile writer leaves no checksum
    offsets = doc["packs"]["offset"]
    doc["packs"]["offset"] = [offsets[1], offsets[0]]
    _rewrite_manifest(local_store, "m", m1.version, doc)
    m2 = local_store.put(str(src), "m", codec="raw")
    # checked, found wrong and packed again: the same bytes, so the same pack, now at the right offsets
    assert {d: at.offset for d, at in m2.packed.items()} != {d: at.offset for d, at in
                                                             local_store.manifest(f"m@{m1.version}").packed.items()}
    assert local_store.verify(f"m@{m2.version}", full=True).problems == []
    local_store.get(f"m@{m2.version}", str(tmp_path / "out"))
    assert all((tmp_path / "out" / n).read_bytes() == (src / n).read_bytes() for n in ("a.bin", "b.bin"))


def test_an_older_manifest_that_misstates_a_chunk_length_cannot_make_put_publish_an_unreadable_one(local_store,
                                                                                                   tmp_path):
    """v1 claims its chunk is 5000 bytes with a stored length no 100-byte chunk can have: reusing
    that entry would publish a manifest every reader refuses, and stop gc for the whole store."""
    write(tmp_path / "f.bin", os.urandom(100))
    m1 = local_store.put(str(tmp_path / "f.bin"), "m", codec="raw")
    doc = msgpack.unpackb(pack(m1), raw=False)
    doc.pop("check")  # edited by hand below: a hostile writer leaves no checksum
    doc["files"][0]["size"] = 5000
    doc["files"][0]["lengths"] = [5000]
    doc["packs"]["length"] = [encoded_capacity(100) + 100]
    _rewrite_manifest(local_store, "m", m1.version, doc)
    m2 = local_store.put(str(tmp_path / "f.bin"), "m", codec="raw")
    local_store.manifest(f"m@{m2.version}")  # readable
    local_store.get(f"m@{m2.version}", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "f.bin").read_bytes()


def test_a_put_whose_real_manifest_fits_is_not_refused_on_a_worst_case_estimate(local_store, tmp_path, monkeypatch):
    """The size check before sending counted every small chunk as packed at the largest offsets;
    a put whose actual manifest fits under the limit was refused, and told nothing of --pack-below."""
    from dataclasses import replace

    import cas.store

    src = tmp_path / "v"
    for i in range(1500):
        write(src / "shards" / f"part-{i:06d}.json", os.urandom(100))
    m = local_store.put(str(src), "a")
    real = len(pack(m))
    estimate = len(pack(replace(m, packed={d: PackedChunk(d, 1 << 30, 1 << 30) for d in m.packed})))
    limit = (real + estimate) // 2
    monkeypatch.setattr(cas.store, "MAX_MANIFEST_BYTES", limit)
    local_store.put(str(src), "b")  # its manifest is `real` bytes: it fits
    monkeypatch.setattr(cas.store, "MAX_MANIFEST_BYTES", len(pack(replace(m, packed={}))) + 10)
    with pytest.raises(CasError, match="--pack-below 0"):  # only the pack table does not fit: say what helps
        local_store.put(str(src), "c")
