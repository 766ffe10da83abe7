"""End to end through the Store API, on every backend the `store` fixture provides."""

import os
import shutil
import socket
import stat
import threading

import pytest

from cas import AlreadyExists, BadManifest, BadName, CasError, CorruptChunk, InUse, NotFound, Store
from cas.errors import NoSuchModel, NoSuchTag, NoSuchVersion
from cas.backends import LocalBackend
from cas.layout import chunk_key, manifest_key
from tests.conftest import write

KIB = 1024
CHUNK = 64 * KIB


def weights(n: int, seed: int = 0) -> bytes:
    import random
    return random.Random(seed).randbytes(n)


def test_single_file_round_trips_and_keeps_its_name_and_mode(store, tmp_path):
    src = write(tmp_path / "model.keras", weights(300 * KIB + 17))
    os.chmod(src, 0o640)
    m = store.put(str(src), "resnet", chunk_size=CHUNK)
    assert (m.model, m.version, m.kind) == ("resnet", "1", "file")
    assert m.files[0].path == "model.keras" and m.files[0].size == 300 * KIB + 17
    dest = tmp_path / "out" / "restored.keras"
    store.get("resnet", str(dest))
    assert dest.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640


def test_directory_round_trips_with_nested_and_empty_dirs(store, tmp_path):
    root = tmp_path / "saved"
    write(root / "saved_model.pb", weights(10 * KIB, 1))
    write(root / "variables" / "variables.data-00000-of-00001", weights(200 * KIB, 2))
    write(root / "variables" / "variables.index", b"")
    (root / "assets").mkdir()
    m = store.put(str(root), "sm", chunk_size=CHUNK)
    assert m.kind == "dir" and m.dirs == ("assets",)
    dest = tmp_path / "back"
    store.get("sm@1", str(dest))
    for rel in ("saved_model.pb", "variables/variables.data-00000-of-00001", "variables/variables.index"):
        assert (dest / rel).read_bytes() == (root / rel).read_bytes()
    assert (dest / "assets").is_dir()


def test_second_put_of_same_bytes_sends_nothing_and_gets_next_version(store, tmp_path):
    src = write(tmp_path / "w.bin", weights(512 * KIB))
    store.put(str(src), "m", chunk_size=CHUNK)
    assert store.last_transfer.sent_chunks == 8
    m2 = store.put(str(src), "m", chunk_size=CHUNK)
    assert m2.version == "2"
    assert store.last_transfer.sent_chunks == 0
    assert store.versions("m") == ["1", "2"]
    assert store.tags("m") == {"latest": "2"}


def test_changed_chunks_are_the_only_ones_sent(store, tmp_path):
    data = bytearray(weights(1024 * KIB))
    src = write(tmp_path / "w.bin", bytes(data))
    store.put(str(src), "m", chunk_size=CHUNK)
    data[5 * CHUNK + 3] ^= 0xFF
    data[9 * CHUNK] ^= 0xFF
    src.write_bytes(bytes(data))
    store.put(str(src), "m", chunk_size=CHUNK)
    assert store.last_transfer.sent_chunks == 2
    report = store.stats("m")["models"][0]
    assert [v["new_chunks"] for v in report["versions"]] == [16, 2]
    assert report["dedup_ratio"] == pytest.approx(2048 / 1152, rel=1e-3)


def test_repeated_chunks_within_a_file_are_stored_once(store, tmp_path):
    block = weights(CHUNK, 3)
    src = write(tmp_path / "w.bin", block * 5 + b"tail")
    store.put(str(src), "m", chunk_size=CHUNK)
    assert store.last_transfer.sent_chunks == 2
    dest = tmp_path / "o.bin"
    store.get("m", str(dest))
    assert dest.read_bytes() == src.read_bytes()


def test_explicit_version_labels_are_never_overwritten(store, tmp_path):
    a = write(tmp_path / "a", b"A" * 1000)
    b = write(tmp_path / "b", b"B" * 1000)
    store.put(str(a), "m", "v1.0", chunk_size=CHUNK)
    with pytest.raises(AlreadyExists) as taken:
        store.put(str(b), "m", "v1.0", chunk_size=CHUNK)
    assert (taken.value.model, taken.value.version) == ("m", "v1.0")
    out = tmp_path / "o"
    store.get("m@v1.0", str(out))
    assert out.read_bytes() == b"A" * 1000


def test_tags_move_keep_history_and_roll_back_step_by_step(store, tmp_path):
    src = write(tmp_path / "w", b"x")
    for _ in range(3):
        store.put(str(src), "m", chunk_size=CHUNK)
    store.tag("m@1", "prod")
    store.tag("m@3", "prod")
    assert store.tags("m") == {"latest": "3", "prod": "3"}
    assert store.rollback("m", "prod") == "1"
    assert store.rollback("m") == "2"
    assert store.rollback("m") == "1"
    with pytest.raises(Exception, match="no earlier target"):
        store.rollback("m")
    assert store.resolve("m") == ("m", "1")
    assert [e.target for e in store.tag_history("m", "latest")] == ["1", "2", "3", "2", "1"]
    store.untag("m", "prod")
    assert "prod" not in store.tags("m")
    with pytest.raises(NotFound, match="no tag 'prod'"):
        store.manifest("m:prod")


def test_put_without_latest_and_with_extra_tags(store, tmp_path):
    src = write(tmp_path / "w", b"x")
    store.put(str(src), "m", chunk_size=CHUNK)
    store.put(str(src), "m", latest=False, tags=["canary"], chunk_size=CHUNK)
    assert store.tags("m") == {"latest": "1", "canary": "2"}


def test_rm_keeps_the_label_reserved_and_moves_latest_back(store, tmp_path):
    src = write(tmp_path / "w", b"x")
    store.put(str(src), "m", chunk_size=CHUNK)
    store.put(str(src), "m", chunk_size=CHUNK, tags=["prod"])
    with pytest.raises(InUse, match="tagged prod"):
        store.rm("m@2")
    store.rm("m@2", force=True)
    assert store.versions("m") == ["1"]
    assert store.tags("m") == {"latest": "1"}
    assert store.put(str(src), "m", chunk_size=CHUNK).version == "3"  # 2 is never reused
    with pytest.raises(AlreadyExists, match="removed"):
        store.put(str(src), "m", "2", chunk_size=CHUNK)
    with pytest.raises(BadName, match="explicit MODEL@VERSION"):
        store.rm("m")


def test_missing_things_name_themselves(store, tmp_path):
    with pytest.raises(NoSuchModel) as no_model:
        store.manifest("ghost")
    assert no_model.value.model == "ghost" and isinstance(no_model.value, FileNotFoundError)
    src = write(tmp_path / "w", b"x")
    store.put(str(src), "m", chunk_size=CHUNK)
    with pytest.raises(NoSuchVersion) as no_version:
        store.get("m@9", str(tmp_path / "o"))
    assert (no_version.value.model, no_version.value.version) == ("m", "9")
    with pytest.raises(NoSuchTag) as no_tag:
        store.get("m:prod", str(tmp_path / "o"))
    assert (no_tag.value.model, no_tag.value.tag) == ("m", "prod")
    with pytest.raises(NotFound, match="no such file"):
        store.put(str(tmp_path / "nope"), "m")
    assert not (tmp_path / "o").exists()


def test_errors_survive_pickling_with_their_fields():
    """multiprocessing and concurrent.futures pickle a worker's exception; the parent rebuilds it."""
    import pickle

    from cas.errors import MissingChunk, VersionExists
    errors = [NoSuchModel("m", "file:///s"), NoSuchVersion("m", "9"), NoSuchTag("m", "prod"),
              MissingChunk("ab" * 16, "m@1 file 'w'"), VersionExists("m", "1"), InUse("in use", model="m", tag="t")]
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err)
        assert (copy.model, copy.version, copy.tag, copy.digest) == (err.model, err.version, err.tag, err.digest)


def test_rollback_after_rm_of_the_latest_version_goes_back_a_version(store, tmp_path):
    src = write(tmp_path / "w", b"x")
    for _ in range(3):
        store.put(str(src), "m", chunk_size=CHUNK)
    store.rm("m@3")  # latest moves back to 2
    assert store.tags("m") == {"latest": "2"}
    assert store.rollback("m") == "1"  # not 2 again: a rollback that changes nothing is no rollback


def test_rollback_never_leaves_latest_pointing_at_nothing(store, tmp_path):
    src = write(tmp_path / "w", b"x")
    store.put(str(src), "m", chunk_size=CHUNK)
    store.rm("m@1")  # the only version: latest is untagged
    store.put(str(src), "m", chunk_size=CHUNK)
    with pytest.raises(CasError, match="no earlier target"):
        store.rollback("m")
    assert store.tags("m") == {"latest": "2"}


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x:y", "\x01"])
def test_bad_names_change_nothing(store, tmp_path, bad):
    src = write(tmp_path / "w", b"x")
    with pytest.raises(BadName):
        store.put(str(src), bad)
    with pytest.raises(BadName):
        store.put(str(src), "m", bad)
    with pytest.raises(BadName):
        store.put(str(src), "m", tags=[bad])
    assert store.models() == []


def test_existing_destination_is_refused_unless_forced(store, tmp_path):
    src = write(tmp_path / "w", b"new bytes")
    store.put(str(src), "m", chunk_size=CHUNK)
    dest = write(tmp_path / "dest", b"precious")
    with pytest.raises(AlreadyExists, match="--force"):
        store.get("m", str(dest))
    assert dest.read_bytes() == b"precious"
    store.get("m", str(dest), force=True)
    assert dest.read_bytes() == b"new bytes"
    # a checkout of one version replaced by another version's tree, and no staging left behind
    d = tmp_path / "tree"
    write(tmp_path / "v1" / "old.txt", b"old")
    store.put(str(tmp_path / "v1"), "dm", chunk_size=CHUNK)
    write(tmp_path / "v2" / "new.txt", b"new")
    store.put(str(tmp_path / "v2"), "dm", chunk_size=CHUNK)
    store.get("dm@1", str(d))
    store.get("dm@2", str(d), force=True)  # an untouched checkout is replaced
    assert sorted(os.listdir(d)) == ["new.txt"]
    assert [n for n in os.listdir(tmp_path) if "cas-partial" in n] == []


def test_force_keeps_a_checkout_once_the_user_has_touched_it(store, tmp_path):
    write(tmp_path / "v1" / "cfg.json", b"stored config")
    write(tmp_path / "v1" / "sub" / "w.bin", b"stored weights")
    store.put(str(tmp_path / "v1"), "dm", chunk_size=CHUNK)
    co = tmp_path / "co"
    store.get("dm", str(co))
    (co / "cfg.json").write_bytes(b"my edit")  # edited in place
    with pytest.raises(AlreadyExists, match=r"holds 'cfg.json', which is not what a get left there"):
        store.get("dm", str(co), force=True)
    assert (co / "cfg.json").read_bytes() == b"my edit"
    # edited to the same length with its modification time set back (touch -r, rsync -t, tar)
    shutil.rmtree(co)
    store.get("dm", str(co))
    before = os.stat(co / "cfg.json")
    (co / "cfg.json").write_bytes(b"stored CONFIG")
    os.utime(co / "cfg.json", ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(AlreadyExists, match="cfg.json"):
        store.get("dm", str(co), force=True)
    assert (co / "cfg.json").read_bytes() == b"stored CONFIG"
    # deleted and made anew with the version's names: the user's directory, not a checkout
    shutil.rmtree(co)
    write(co / "cfg.json", b"my precious config")
    with pytest.raises(AlreadyExists, match="cfg.json"):
        store.get("dm", str(co), force=True)
    assert (co / "cfg.json").read_bytes() == b"my precious config"
    # a subdirectory replaced by one of the user's own
    shutil.rmtree(co)
    store.get("dm", str(co))
    shutil.rmtree(co / "sub")
    write(co / "sub" / "w.bin", b"my weights")
    with pytest.raises(AlreadyExists, match="sub/w.bin"):
        store.get("dm", str(co), force=True)
    assert (co / "sub" / "w.bin").read_bytes() == b"my weights"
    # what the user removed from a checkout is no loss: the rest is replaced
    shutil.rmtree(co)
    store.get("dm", str(co))
    os.unlink(co / "sub" / "w.bin")
    store.get("dm", str(co), force=True)
    assert (co / "sub" / "w.bin").read_bytes() == b"stored weights"


def test_force_keeps_a_file_written_into_the_checkout_while_it_was_checked(store, tmp_path, monkeypatch):
    from cas import localfs
    write(tmp_path / "v1" / "sub" / "w.bin", b"stored weights")
    store.put(str(tmp_path / "v1"), "dm", chunk_size=CHUNK)
    co = tmp_path / "co"
    store.get("dm", str(co))
    real, calls = localfs.checkout_refusal, []

    def checked_then_written(directory, previous):
        verdict = real(directory, previous)
        calls.append(directory)
        if len(calls) == 2:  # the last check before the swap has walked the tree: a file lands in it now
            write(co / "sub" / "late.txt", b"written during the check")
        return verdict

    monkeypatch.setattr(localfs, "checkout_refusal", checked_then_written)
    with pytest.raises(AlreadyExists, match="late.txt"):
        store.get("dm", str(co), force=True)
    assert (co / "sub" / "late.txt").read_bytes() == b"written during the check"
    assert (co / "sub" / "w.bin").read_bytes() == b"stored weights"
    assert [n for n in os.listdir(tmp_path) if "cas-partial" in n] == []


def test_a_destination_name_near_the_file_system_limit_is_fetched_and_replaced(store, tmp_path):
    write(tmp_path / "src" / "a.txt", b"a")
    store.put(str(tmp_path / "src"), "dm", chunk_size=CHUNK)
    store.put(str(tmp_path / "src" / "a.txt"), "m", chunk_size=CHUNK)
    for name, ref in (("f" * 240, "m"), ("d" * 250, "dm")):
        store.get(ref, str(tmp_path / name))
        store.get(ref, str(tmp_path / name), force=True)  # through the staging name and the "-old" one
    assert (tmp_path / ("f" * 240)).read_bytes() == b"a" and (tmp_path / ("d" * 250) / "a.txt").read_bytes() == b"a"
    assert [n for n in os.listdir(tmp_path) if "cas-partial" in n] == []


def test_a_destination_whose_name_is_not_utf8_is_fetched_and_replaced(store, tmp_path):
    write(tmp_path / "src" / "a.txt", b"a")
    store.put(str(tmp_path / "src"), "dm", chunk_size=CHUNK)
    dest = os.path.join(str(tmp_path), os.fsdecode(b"caf\xe9"))  # Latin-1, as old systems name things
    store.get("dm", dest)
    store.get("dm", dest, force=True)
    assert open(os.path.join(dest, "a.txt"), "rb").read() == b"a"


def test_force_replaces_a_symlink_to_a_directory_with_a_file_and_leaves_the_directory(store, tmp_path):
    write(tmp_path / "w", b"model bytes")
    store.put(str(tmp_path / "w"), "m", chunk_size=CHUNK)
    write(tmp_path / "target" / "keep.txt", b"keep")
    os.symlink(tmp_path / "target", tmp_path / "link")
    store.get("m", str(tmp_path / "link"), force=True)
    assert not os.path.islink(tmp_path / "link") and (tmp_path / "link").read_bytes() == b"model bytes"
    assert (tmp_path / "target" / "keep.txt").read_bytes() == b"keep"


def test_force_never_replaces_a_device_fifo_or_socket(store, tmp_path):
    write(tmp_path / "w", b"model bytes")
    store.put(str(tmp_path / "w"), "m", chunk_size=CHUNK)
    specials = [tmp_path / "fifo", tmp_path / "sock"]
    os.mkfifo(specials[0])
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(specials[1]))
    try:  # a copy of /dev/null (the destination a user times a fetch with), where we may make one
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        specials.append(tmp_path / "null")
    except OSError:
        pass
    try:
        for special in specials:
            with pytest.raises(AlreadyExists, match="device, FIFO or socket"):
                store.get("m", str(special), force=True)
            assert not stat.S_ISREG(os.lstat(special).st_mode)
    finally:
        sock.close()


def test_force_never_deletes_a_directory_of_the_users_files(store, tmp_path, monkeypatch):
    write(tmp_path / "w", b"model bytes")
    store.put(str(tmp_path / "w"), "m", chunk_size=CHUNK)
    write(tmp_path / "src" / "a.txt", b"a")
    store.put(str(tmp_path / "src"), "dm", chunk_size=CHUNK)
    precious = tmp_path / "precious"
    write(precious / "project" / "notes.txt", b"work")
    with pytest.raises(AlreadyExists, match=r"--force .*precious.* is a single file"):
        store.get("m", str(precious), force=True)  # a file version never replaces a directory
    with pytest.raises(AlreadyExists, match=r"--force .*not a checkout this machine's cache knows"):
        store.get("dm", str(precious), force=True)  # nor a tree one that is not a checkout
    assert (precious / "project" / "notes.txt").read_bytes() == b"work"
    # a checkout where the user added a file of their own is theirs now
    store.get("dm", str(tmp_path / "co"))
    write(tmp_path / "co" / "mine.txt", b"mine")
    with pytest.raises(AlreadyExists, match="mine.txt"):
        store.get("dm", str(tmp_path / "co"), force=True)
    assert (tmp_path / "co" / "mine.txt").read_bytes() == b"mine"
    # a directory of the user's own that merely has the version's file names is theirs too
    write(tmp_path / "own" / "a.txt", b"my own a")
    with pytest.raises(AlreadyExists, match="not a checkout this machine's cache knows"):
        store.get("dm", str(tmp_path / "own"), force=True)
    assert (tmp_path / "own" / "a.txt").read_bytes() == b"my own a"
    # never the working directory, nor one that contains it, even when it is empty
    work = tmp_path / "empty"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work / "sub")
    for dest in (".", str(work)):
        with pytest.raises(AlreadyExists, match="working directory"):
            store.get("dm", dest, force=True)
    assert (work / "sub").is_dir()
    assert [n for n in os.listdir(tmp_path) if "cas-partial" in n] == []
    # an empty directory is replaced by a tree
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fresh").mkdir()
    store.get("dm", str(tmp_path / "fresh"), force=True)
    assert (tmp_path / "fresh" / "a.txt").read_bytes() == b"a"


def test_gets_to_a_relative_path_do_not_make_the_cache_forget_other_checkouts(local_store, tmp_path, monkeypatch):
    write(tmp_path / "v1" / "old.txt", b"old")
    local_store.put(str(tmp_path / "v1"), "dm", chunk_size=CHUNK)
    write(tmp_path / "v2" / "new.txt", b"new")
    local_store.put(str(tmp_path / "v2"), "dm", chunk_size=CHUNK)
    local_store.get("dm@1", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)
    for _ in range(4):
        local_store.get("dm@1", "out", force=True)  # one place, however it is spelled
    local_store.get("dm@2", str(tmp_path / "elsewhere"), force=True)  # still a known checkout of dm@1
    assert sorted(os.listdir(tmp_path / "elsewhere")) == ["new.txt"]


def test_get_reuses_chunks_of_an_earlier_fetched_version(store, tmp_path):
    data = bytearray(weights(1024 * KIB))
    src = write(tmp_path / "w.bin", bytes(data))
    store.put(str(src), "m", chunk_size=CHUNK)
    data[0] ^= 1
    src.write_bytes(bytes(data))
    store.put(str(src), "m", chunk_size=CHUNK)
    store.get("m@1", str(tmp_path / "v1.bin"))
    assert store.last_transfer.fetched_bytes == 1024 * KIB
    store.get("m@2", str(tmp_path / "v2.bin"))
    assert store.last_transfer.fetched_bytes == CHUNK
    assert store.last_transfer.reused_bytes == 1024 * KIB - CHUNK
    assert (tmp_path / "v2.bin").read_bytes() == bytes(data)


def test_an_edited_local_copy_is_not_reused(store, tmp_path):
    src = write(tmp_path / "w.bin", weights(256 * KIB))
    store.put(str(src), "m", chunk_size=CHUNK)
    store.put(str(src), "m", chunk_size=CHUNK)
    v1 = tmp_path / "v1.bin"
    store.get("m@1", str(v1))
    with open(v1, "r+b") as f:
        f.write(b"tampered")
    store.get("m@2", str(tmp_path / "v2.bin"))
    assert (tmp_path / "v2.bin").read_bytes() == src.read_bytes()
    assert store.last_transfer.fetched_bytes == CHUNK  # the tampered chunk came from the store


def test_checkout_moves_no_bytes_the_second_time(store, tmp_path):
    src = write(tmp_path / "w.bin", weights(256 * KIB))
    store.put(str(src), "m", chunk_size=CHUNK)
    path = store.checkout("m")
    assert open(path, "rb").read() == src.read_bytes()
    assert store.last_transfer.fetched_bytes == 256 * KIB
    assert store.checkout("m") == path
    assert store.last_transfer.fetched_bytes == 0


def test_a_damaged_checkout_with_an_added_file_is_fetched_again(local_store, tmp_path):
    """The cache's own checkout is no user directory: --force's refusals must not leave it stuck."""
    write(tmp_path / "src" / "w.bin", weights(64 * KIB))
    local_store.put(str(tmp_path / "src"), "m", chunk_size=CHUNK)
    path = local_store.checkout("m")
    with open(os.path.join(path, "w.bin"), "ab") as f:
        f.write(b"edited")  # no longer complete: the next checkout fetches it again
    open(os.path.join(path, "scratch.txt"), "wb").write(b"a loader's scratch file")
    assert local_store.checkout("m") == path
    assert sorted(os.listdir(path)) == ["w.bin"]
    assert open(os.path.join(path, "w.bin"), "rb").read() == weights(64 * KIB)


def test_concurrent_puts_get_distinct_versions(store, tmp_path):
    srcs = [write(tmp_path / f"w{i}", weights(100 * KIB, i)) for i in range(6)]
    got, errors = [], []

    def put(p):
        try:
            got.append(store.put(str(p), "m", chunk_size=CHUNK).version)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(p,)) for p in srcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got, key=int) == ["1", "2", "3", "4", "5", "6"]
    for v in got:
        m = store.manifest(f"m@{v}")
        out = tmp_path / f"out{v}"
        store.get(f"m@{v}", str(out))
        assert out.read_bytes() == (tmp_path / m.files[0].path).read_bytes()


def test_stats_report_dedup_compression_and_new_bytes(store, tmp_path):
    compressible = write(tmp_path / "c.bin", b"float32 " * 64 * KIB)
    store.put(str(compressible), "m", chunk_size=CHUNK)
    store.put(str(compressible), "m", chunk_size=CHUNK)
    report = store.stats()
    m = report["models"][0]
    assert m["logical_bytes"] == 2 * 512 * KIB
    assert m["dedup_ratio"] == 2.0 * 512 * KIB / m["unique_bytes"]
    assert m["compression_ratio"] > 10
    assert m["versions"][1]["new_stored_bytes"] == 0
    assert report["models"][0]["missing_chunks"] == 0


# -- damage: only the local backend lets us reach in and break things ---------------------------

def test_corrupt_chunk_is_detected_and_never_reaches_the_destination(local_store, tmp_path):
    src = write(tmp_path / "w.bin", weights(256 * KIB))
    m = local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)  # packed chunks: tests/test_packs.py
    key = chunk_key(m.files[0].digests[2].hex())
    path = os.path.join(local_store.backend.root, *key.split("/"))
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF
    os.chmod(path, 0o644)
    open(path, "wb").write(bytes(data))
    dest = tmp_path / "o.bin"
    with pytest.raises(CorruptChunk, match=f"chunk {m.files[0].digests[2].hex()} of m@1 file 'w.bin'"):
        local_store.get("m", str(dest))
    assert not dest.exists()
    assert [n for n in os.listdir(tmp_path) if "cas-partial" in n] == []


def test_missing_chunk_fails_clearly(local_store, tmp_path):
    src = write(tmp_path / "w.bin", weights(256 * KIB))
    m = local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)  # packed chunks: tests/test_packs.py
    local_store.backend.delete(chunk_key(m.files[0].digests[0].hex()))
    with pytest.raises(NotFound, match="missing from the store"):
        local_store.get("m", str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_hostile_manifest_is_refused_before_anything_is_written(local_store, tmp_path):
    import msgpack

    from cas.manifest import pack
    src = write(tmp_path / "w.bin", b"x" * 10)
    m = local_store.put(str(src), "m", chunk_size=CHUNK)
    doc = msgpack.unpackb(pack(m), raw=False)
    doc.pop("check")  # edited by hand below: a hostile writer leaves no checksum
    doc["kind"] = "dir"
    doc["version"] = "2"
    doc["files"][0]["path"] = "../escaped"
    local_store.backend.create(manifest_key("m", "2"), msgpack.packb(doc, use_bin_type=True))
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(BadManifest, match="leaves or re-enters"):
        local_store.get("m@2", str(dest))
    assert not (tmp_path / "dest").exists() or os.listdir(tmp_path / "dest") == []
    assert not (tmp_path / "dest" / "escaped").exists()
    local_store.backend.create(manifest_key("m", "3"), pack(m)[:-3])
    with pytest.raises(BadManifest, match="truncated or corrupt"):
        local_store.manifest("m@3")


def test_a_file_changing_during_put_publishes_nothing(local_store, tmp_path, monkeypatch):
    from cas import SourceChanged, transfer
    src = write(tmp_path / "w.bin", weights(256 * KIB))
    real = transfer.hash_pieces

    def hash_then_edit(*a, **kw):
        out = real(*a, **kw)
        src.write_bytes(weights(256 * KIB, seed=99))
        return out

    monkeypatch.setattr("cas.store.hash_pieces", hash_then_edit)
    with pytest.raises(SourceChanged, match="changed while being stored"):
        local_store.put(str(src), "m", chunk_size=CHUNK)
    assert local_store.versions("m") == []


def test_store_open_uses_cas_store_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CAS_STORE", str(tmp_path / "envstore"))
    s = Store.open(cache_dir=False)
    assert s.backend.url == f"file://{tmp_path / 'envstore'}"


@pytest.mark.parametrize("direct", [True, False])
def test_get_writes_identical_bytes_with_and_without_o_direct(local_store, tmp_path, direct):
    """O_DIRECT where the file system allows it (ext4 here), plain writes where it refuses (tmpfs)."""
    local_store.direct_writes = direct
    src = write(tmp_path / "w.bin", weights(5 * CHUNK + 123))  # aligned chunks and an unaligned tail
    local_store.put(str(src), "m", chunk_size=CHUNK)
    for parent in (tmp_path, "/dev/shm"):
        if not os.path.isdir(parent):
            continue
        dest = os.path.join(parent, f"cas-direct-test-{os.getpid()}-{direct}.bin")
        try:
            local_store.get("m", dest, force=True)
            assert open(dest, "rb").read() == src.read_bytes()
        finally:
            if os.path.exists(dest):
                os.unlink(dest)


def test_a_store_refuses_a_min_saving_outside_0_to_1(tmp_path):
    with pytest.raises(ValueError, match="min_saving"):
        Store(LocalBackend(str(tmp_path / "s")), cache_dir=False, min_saving=-1.0)


def test_rollback_skips_removed_versions_and_rm_moves_tags_first(store, tmp_path):
    for i in range(3):
        store.put(str(write(tmp_path / f"w{i}", bytes([i]) * 1000)), "m", chunk_size=CHUNK)
    store.rm("m@2")
    assert store.tags("m") == {"latest": "3"}
    assert store.rollback("m") == "1"  # not the removed 2
    assert store.manifest("m").version == "1"
    assert store.verify().problems == []


def test_an_rm_killed_before_it_moved_latest_is_finished_by_running_it_again(store, tmp_path):
    """The state an rm of the old order (manifest first, tags after) left when killed midway."""
    from cas.layout import manifest_key, tombstone_key
    for i in range(2):
        store.put(str(write(tmp_path / f"w{i}", bytes([i]) * 1000)), "m", chunk_size=CHUNK)
    store.backend.create(tombstone_key("m", "2"), b"")
    store.backend.delete(manifest_key("m", "2"))
    problems = store.verify().problems
    assert [(p.model, p.version) for p in problems] == [("m", "2")] and "tag 'latest'" in problems[0].problem
    assert store.rm("m@2") == "2"  # finishes the job instead of failing
    assert store.tags("m") == {"latest": "1"}
    assert store.verify().problems == []
    with pytest.raises(NotFound):
        store.rm("m@3")  # a version that never was is still an error


# -- memory: buffered bytes are capped, not just threads ---------------------------------------------

class _ConcurrencyMeter:
    """Wraps a backend; records the most chunk reads or writes in flight at once."""

    def __init__(self, inner):
        import threading

        self.inner, self.url, self.max_workers = inner, inner.url, 16
        self._lock, self.now, self.peak = threading.Lock(), 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _measured(self, fn, key, *args):
        import time

        if not key.startswith("chunks/"):
            return fn(key, *args)
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(0.02)
            return fn(key, *args)
        finally:
            with self._lock:
                self.now -= 1

    def create(self, key, data):
        return self._measured(self.inner.create, key, data)

    def read(self, key, *args):
        return self._measured(self.inner.read, key, *args)

    def read_into(self, key, buffer):
        return self._measured(self.inner.read_into, key, buffer)


@pytest.mark.parametrize(("budget", "put_most", "get_most"), [(2 << 20, 1, 1), (12 << 20, 4, 6)])
def test_large_chunks_run_fewer_threads_so_buffered_bytes_stay_within_the_budget(tmp_path, budget, put_most,
                                                                                  get_most):
    from cas.backends import MemoryBackend

    meter = _ConcurrencyMeter(MemoryBackend())
    store = Store(meter, cache_dir=False, n_workers=16, memory_budget=budget)
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(32 << 20))
    store.put(str(src), "m", chunk_size=1 << 20)  # 32 chunks; a put task holds 3 buffers (read, encode, backend's copy)
    assert meter.peak == put_most  # budget / (3 x 1 MiB), not the 16 threads asked for
    meter.peak = 0
    store.get("m", str(tmp_path / "out.bin"))  # get holds an object and a chunk buffer each
    assert meter.peak == get_most  # budget / (2 x 1 MiB)
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    with pytest.raises(ValueError, match="memory_budget"):
        Store(meter, cache_dir=False, memory_budget=0)


# -- modes follow the umask -----------------------------------------------------------------------

@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def test_objects_follow_the_umask_so_a_private_store_stays_private(tmp_path, umask):
    umask(0o077)
    root = tmp_path / "store"
    store = Store.open(str(root), cache_dir=False)
    src = write(tmp_path / "m" / "w.bin", os.urandom(300_000))
    store.put(str(src.parent), "m", chunk_size=1 << 16)
    modes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            modes[os.path.join(dirpath, name)] = stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode)
    assert modes and all(mode & 0o077 == 0 for mode in modes.values()), {p: oct(m) for p, m in modes.items() if m & 0o077}
    umask(0o002)  # a team sharing files through a group: objects are group-writable like all its files
    store.put(str(src.parent), "n")
    manifest = root / "manifests" / "n" / "1.msgpack"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o664


def test_a_manifest_damaged_into_another_valid_one_is_refused_by_its_checksum(local_store, tmp_path):
    from cas import maintenance
    write(tmp_path / "src" / "config.json", b"{}")
    local_store.put(str(tmp_path / "src"), "dm", chunk_size=CHUNK)
    path = os.path.join(local_store.backend.root, manifest_key("dm", "1"))
    data = open(path, "rb").read()
    assert data.count(b"config.json") == 1
    os.chmod(path, 0o644)
    with open(path, "wb") as f:  # one byte of a file name: still a valid manifest, naming another file
        f.write(data.replace(b"config.json", b"config.jsoo"))
    with pytest.raises(BadManifest, match="dm@1.*does not match its checksum"):
        local_store.get("dm", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    report = maintenance.verify(local_store, full=True)
    assert [p for p in report.problems if "checksum" in p.problem and (p.model, p.version) == ("dm", "1")]


def test_a_version_whose_manifest_is_damaged_can_be_removed_and_gc_goes_on(local_store, tmp_path):
    src = write(tmp_path / "w.bin", weights(256 * KIB))
    for _ in range(3):
        local_store.put(str(src), "m", chunk_size=CHUNK)
    path = os.path.join(local_store.backend.root, manifest_key("m", "3"))
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"hello world")
    with pytest.raises(CasError, match=r"gc stopped before deleting anything: .*`cas rm m@3`"):
        local_store.gc(wait=0)
    assert local_store.rm("m@3") == "3"
    assert local_store.versions("m") == ["1", "2"] and local_store.tags("m")["latest"] == "2"
    local_store.gc(wait=0)
    local_store.get("m", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()


def test_rm_leaves_versions_a_newer_cas_wrote_alone(local_store, tmp_path):
    import msgpack

    from cas.errors import NewerFormat
    src = write(tmp_path / "w.bin", b"weights")
    for _ in range(3):
        local_store.put(str(src), "m", chunk_size=CHUNK)
    path = os.path.join(local_store.backend.root, manifest_key("m", "2"))
    os.chmod(path, 0o644)
    with open(path, "wb") as f:  # healthy, for the newer cas that wrote it
        f.write(msgpack.packb({"format": 99, "model": "m", "version": "2"}))
    for ref in ("m@2", "m@3"):  # m@3: latest would have to move past m@2, which this cas cannot date
        with pytest.raises(NewerFormat, match="upgrade cas"):
            local_store.rm(ref)
    assert local_store.versions("m") == ["1", "2", "3"] and local_store.tags("m")["latest"] == "3"


def test_an_explicit_numeric_label_moves_latest_where_the_user_asked(store, tmp_path):
    src = write(tmp_path / "w.bin", b"weights")
    store.put(str(src), "m", "10", chunk_size=CHUNK)
    store.put(str(src), "m", "7", chunk_size=CHUNK)
    assert store.tags("m")["latest"] == "7"


def test_get_masks_modes_from_the_manifest_with_the_umask(tmp_path, local_store, umask):
    src = write(tmp_path / "tool.sh", b"#!/bin/sh\n")
    os.chmod(src, 0o777)
    local_store.put(str(src), "m")
    umask(0o027)
    local_store.get("m", str(tmp_path / "out.sh"))
    assert stat.S_IMODE((tmp_path / "out.sh").stat().st_mode) == 0o750
