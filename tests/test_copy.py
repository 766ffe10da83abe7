"""Store-to-store copy: only missing chunks travel, every one verified, resumable after a kill."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest

from cas import Store
from cas.cli import main
from cas.errors import AlreadyExists, CorruptChunk
from cas.layout import chunk_key
from cas.packing import DEFAULT_PACK_BELOW
from tests.conftest import flip_byte, write

CHUNK = 256 << 10


def _two_versions(tmp_path, n_chunks=40, changed=(3, 17, 18, 39)):
    v1 = os.urandom(n_chunks * CHUNK)
    v2 = bytearray(v1)
    for i in changed:
        v2[i * CHUNK:(i + 1) * CHUNK] = os.urandom(CHUNK)
    return write(tmp_path / "v1.bin", v1), write(tmp_path / "v2.bin", bytes(v2))


def test_copying_v2_from_hdfs_to_s3_after_v1_sends_only_v2s_new_chunks(webhdfs_server, s3_server, tmp_path):
    v1, v2 = _two_versions(tmp_path)
    hdfs_url = webhdfs_server.store_url(root=f"/stores/{uuid.uuid4().hex[:12]}", user="cas")
    with Store.open(hdfs_url, cache_dir=False) as hdfs, Store.open(s3_server.store_url(), cache_dir=False) as s3:
        hdfs.put(str(v1), "resnet", chunk_size=CHUNK)
        hdfs.put(str(v2), "resnet", chunk_size=CHUNK, tags=["prod"])
        first = hdfs.copy("resnet@1", s3)
        assert (first.sent_chunks, first.chunks, first.manifest_copied) == (40, 40, True)
        second = hdfs.copy("resnet:prod", s3, tags=["prod", "latest"])
        assert second.version == "2"
        assert second.sent_chunks == 4  # v2's new chunks, nothing v1 already brought
        assert second.sent_raw_bytes == 4 * CHUNK
        assert s3.versions("resnet") == ["1", "2"] and s3.tags("resnet") == {"prod": "2", "latest": "2"}
        assert s3.manifest("resnet@2") == hdfs.manifest("resnet@2")
        s3.get("resnet@2", str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == v2.read_bytes()
        assert s3.verify(full=True).problems == []
        again = hdfs.copy("resnet@2", s3)
        assert (again.sent_chunks, again.manifest_copied) == (0, False)


def test_copy_refuses_a_different_version_under_the_same_label(tmp_path):
    v1, v2 = _two_versions(tmp_path, n_chunks=4, changed=(1,))
    with Store.open(str(tmp_path / "a"), cache_dir=False) as a, Store.open(str(tmp_path / "b"), cache_dir=False) as b:
        a.put(str(v1), "m", chunk_size=CHUNK)
        b.put(str(v2), "m", chunk_size=CHUNK)
        with pytest.raises(AlreadyExists, match="already has a different m@1"):
            a.copy("m@1", b)
        assert b.versions("m") == ["1"] and b.manifest("m@1").files[0].size == v2.stat().st_size


@pytest.mark.parametrize("pack_below", [0, DEFAULT_PACK_BELOW])
def test_copy_stops_at_a_corrupt_source_chunk_and_publishes_nothing(tmp_path, pack_below):
    v1, _ = _two_versions(tmp_path, n_chunks=6)
    with Store.open(str(tmp_path / "a"), cache_dir=False) as a, Store.open(str(tmp_path / "b"), cache_dir=False) as b:
        m = a.put(str(v1), "m", chunk_size=CHUNK, level=1, pack_below=pack_below)
        assert bool(m.packed) == bool(pack_below)
        victim = m.files[0].digests[2]
        flip_byte(tmp_path / "a", m, victim, from_end=10)
        with pytest.raises(CorruptChunk, match=f"chunk {victim.hex()} of m@1 is corrupt in the source"):
            a.copy("m@1", b)
        assert b.versions("m") == []
        assert b.backend.missing([chunk_key(victim.hex())])
        assert not list(b.backend.walk("packs"))  # a damaged pack never spreads


def test_cas_copy_cli_json_and_tags(tmp_path, s3_server, monkeypatch, capsys):
    monkeypatch.setenv("CAS_CACHE_DIR", str(tmp_path / "cache"))
    src = str(tmp_path / "src")
    v1, _ = _two_versions(tmp_path, n_chunks=5)
    assert main(["--store", src, "put", str(v1), "net", "--chunk-size", "256KiB"]) == 0
    dest = s3_server.store_url()
    capsys.readouterr()
    assert main(["--store", src, "copy", "net", "--to", dest, "--tag", "serving", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sent_chunks"] == 5 and report["version"] == "1" and report["tags"] == ["serving"]
    assert main(["--store", src, "copy", "net@1", "--to", dest]) == 0
    assert "already there: net@1" in capsys.readouterr().out
    assert main(["--store", src, "copy", "net@7", "--to", dest]) == 1
    assert "no version '7'" in capsys.readouterr().err


def test_a_copy_killed_at_random_points_and_run_again_verifies_clean(webhdfs_server, s3_server, tmp_path):
    rng = random.Random(13)
    model = write(tmp_path / "model.bin", os.urandom(12 << 20))
    src = webhdfs_server.store_url(root=f"/stores/{uuid.uuid4().hex[:12]}", user="cas")
    dest = s3_server.store_url()
    with Store.open(src, cache_dir=False) as s:
        s.put(str(model), "big", chunk_size=64 << 10, level=1, pack_below=0)  # counts chunk objects as they land
    env = dict(os.environ, CAS_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=os.getcwd())
    command = [sys.executable, "-m", "cas", "--store", src, "--workers", "2", "copy", "big@1", "--to", dest,
               "--tag", "latest"]
    client, bucket = s3_server.client(), dest.split("/")[2]

    def state() -> tuple[int, bool]:
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", ())]
        return sum("/chunks/" in k for k in keys), any("/manifests/" in k for k in keys)

    mid_copy = []  # chunks at the destination after each kill that left no version there
    for _ in range(8):
        before, _published = state()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and state()[0] == before and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until this run has sent a chunk, then kill it at a random moment
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        chunks, published = state()
        if not published:
            mid_copy.append(chunks)
        if len(mid_copy) >= 3 or published:
            break
    print("chunks at the destination after each kill:", mid_copy)
    assert any(0 < n < 192 for n in mid_copy), mid_copy  # at least one kill landed mid-copy
    done = subprocess.run(command + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Store.open(dest, cache_dir=False) as d:
        assert d.versions("big") == ["1"] and d.tags("big") == {"latest": "1"}
        assert d.verify(full=True).problems == []
        d.get("big", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == model.read_bytes()


def test_copy_keeps_chunk_keys_meaning_the_same_on_both_sides(tmp_path):
    from cas.errors import SettingsConflict
    src = write(tmp_path / "w.bin", os.urandom(300_000))
    shared = Store.create(str(tmp_path / "blake3-store"), chunk_hash="blake3", cache_dir=False)
    shared.put(str(src), "m", chunk_size=64 * 1024)
    fresh = Store.open(str(tmp_path / "fresh"), cache_dir=False)
    assert shared.copy("m", fresh).sent_chunks == 5  # verified with blake3, not xxh3
    assert fresh.chunk_hash.name == "blake3-256"  # the empty destination took the source's keys
    fresh.get("m@1", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    legacy = Store.open(str(tmp_path / "legacy"), cache_dir=False)
    legacy.put(str(src), "other", chunk_size=64 * 1024)  # an xxh3 store with content
    with pytest.raises(SettingsConflict):
        shared.copy("m", legacy)
    assert legacy.versions("m") == []
