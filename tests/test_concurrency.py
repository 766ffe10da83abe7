"""Several processes writing one model at once, and readers watching them."""

import os
import subprocess
import sys
import textwrap

import pytest

from cas import Store

WRITER = textwrap.dedent("""
    import sys
    from cas import Store
    url, writer, src_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    store = Store.open(url, cache_dir=False, n_workers=2)
    for i in range(3):
        name = f"{src_dir}/w{writer}-{i}.bin"
        m = store.put(name, "shared", chunk_size=64 * 1024, tags=[f"writer{writer}"], metadata={"source": name})
        print(m.version, flush=True)
""")

READER = textwrap.dedent("""
    import os, sys, time
    from cas import Store, NotFound
    url, out_dir = sys.argv[1], sys.argv[2]
    store = Store.open(url, cache_dir=False, n_workers=2)
    seen = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        for v in store.versions("shared"):
            dest = f"{out_dir}/v{v}"
            if not os.path.exists(dest):
                m = store.get(f"shared@{v}", dest)   # must never see a partial version
                assert open(dest, "rb").read() == open(m.metadata["source"], "rb").read(), v
                seen += 1
        if seen >= 12:
            break
        time.sleep(0.05)
    print(seen)
""")


def test_concurrent_writer_processes_and_a_reader(tmp_path, process_shared_url):
    src = tmp_path / "src"
    src.mkdir()
    base = os.urandom(1 << 20)
    for w in range(4):
        for i in range(3):  # overlapping content: each version changes one 64 KiB chunk of a shared base
            data = bytearray(base)
            data[(w * 3 + i) * 65536] ^= 0xFF
            (src / f"w{w}-{i}.bin").write_bytes(bytes(data))
    url = process_shared_url
    out = tmp_path / "read"
    out.mkdir()
    reader = subprocess.Popen([sys.executable, "-c", READER, url, str(out)], stdout=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(w), str(src)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for w in range(4)]
    results = [w.communicate(timeout=120) for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0], [e for _, e in results]
    versions = sorted(int(v) for o, _ in results for v in o.split())
    assert versions == list(range(1, 13))  # distinct numbers, none lost
    r_out, _ = reader.communicate(timeout=120)
    assert reader.returncode == 0 and int(r_out) == 12

    store = Store.open(url, cache_dir=False)
    assert store.verify(full=True).problems == []
    tags = store.tags("shared")
    assert tags["latest"] in store.versions("shared")
    for w in range(4):  # each writer's tag names that writer's last version
        m = store.manifest(f"shared:writer{w}")
        assert m.metadata["source"].endswith(f"w{w}-2.bin")
    # 12 versions of 1 MiB share all but 12 chunks
    stats = store.stats("shared")["models"][0]
    assert stats["unique_bytes"] == (16 + 12) * 65536


# -- tags racing rm: every tag move of rm is conditional, and both sides check after their write ----

def _three_versions(store, tmp_path):
    for i in range(3):
        src = tmp_path / f"v{i}.bin"
        src.write_bytes(os.urandom(70_000))
        store.put(str(src), "m", chunk_size=64 * 1024)


def test_a_tag_moved_onto_a_version_being_removed_is_put_back(local_store, tmp_path, monkeypatch):
    """rm checked that no tag pins m@2; a `cas tag m@2 prod` lands before rm deletes it."""
    from cas import refs
    _three_versions(local_store, tmp_path)
    local_store.tag("m@1", "prod")
    other = Store.open(local_store.backend.root, cache_dir=False)
    real_delete = local_store.backend.delete

    def delete(key):
        if key == "manifests/m/2.msgpack":
            refs.set_tag(other.backend, "m", "prod", "2")  # the other user's tag move, after its check
        return real_delete(key)

    monkeypatch.setattr(local_store.backend, "delete", delete)
    local_store.rm("m@2")
    assert local_store.tags("m")["prod"] == "1"  # back where it was, not on a removed version
    assert local_store.verify().problems == []


def test_tagging_a_version_that_is_removed_meanwhile_fails_and_leaves_the_tag(local_store, tmp_path, monkeypatch):
    from cas import NotFound, refs
    _three_versions(local_store, tmp_path)
    local_store.tag("m@1", "prod")
    other = Store.open(local_store.backend.root, cache_dir=False)
    real_set_tag = refs.set_tag

    def set_tag(backend, model, tag, version):
        if tag == "prod":
            other.rm("m@2")  # removed between tag's existence check and its move
        return real_set_tag(backend, model, tag, version)

    monkeypatch.setattr(refs, "set_tag", set_tag)
    with pytest.raises(NotFound, match="no version '2'"):
        local_store.tag("m@2", "prod")
    assert local_store.tags("m")["prod"] == "1"
    assert local_store.verify().problems == []


def test_rm_of_the_latest_version_does_not_undo_a_put_that_moved_latest_meanwhile(local_store, tmp_path,
                                                                                  monkeypatch):
    from cas import refs
    _three_versions(local_store, tmp_path)
    other = Store.open(local_store.backend.root, cache_dir=False)
    new = tmp_path / "v4.bin"
    new.write_bytes(os.urandom(70_000))
    real_current = refs.current
    done = []

    def current(backend, model, tag):
        if tag == "latest" and not done and sys._getframe(1).f_code.co_name == "_append":
            done.append(1)
            other.put(str(new), "m", chunk_size=64 * 1024)  # publishes m@4 and moves latest to it
        return real_current(backend, model, tag)

    monkeypatch.setattr(refs, "current", current)
    local_store.rm("m@3")
    assert done and local_store.tags("m")["latest"] == "4"  # not moved back to m@2


def test_a_put_that_moves_latest_last_does_not_take_it_back_to_its_older_version(local_store, tmp_path,
                                                                                 monkeypatch):
    """Two overlapping puts: m@1 publishes first, but m@2's put moves latest before m@1's does."""
    from cas import refs
    other = Store.open(local_store.backend.root, cache_dir=False)
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(os.urandom(70_000))
    second.write_bytes(os.urandom(70_000))
    real_current = refs.current
    done = []

    def current(backend, model, tag):
        if tag == "latest" and not done and sys._getframe(1).f_code.co_name == "_append":
            done.append(1)
            assert other.put(str(second), "m", chunk_size=64 * 1024).version == "2"  # and moves latest to it
        return real_current(backend, model, tag)

    monkeypatch.setattr(refs, "current", current)
    assert local_store.put(str(first), "m", chunk_size=64 * 1024).version == "1"
    assert done and local_store.tags("m")["latest"] == "2"
    assert [e.target for e in local_store.tag_history("m", "latest")] == ["2"]
    monkeypatch.setattr(refs, "current", real_current)
    local_store.put(str(first), "m", "v-label", chunk_size=64 * 1024)  # a label still moves it
    assert local_store.tags("m")["latest"] == "v-label"
