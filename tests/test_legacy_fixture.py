"""A store written before manifests recorded each file's chunker (tests/fixtures/store-v1, made by
tests/fixtures/make_store_v1.py at commit c1602a5) stays readable, verifiable and extendable."""

import hashlib
import json
import os
import shutil

import pytest

from cas import Store
from cas.backends import LocalBackend

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _fixture_store(tmp_path, name: str) -> tuple[Store, dict]:
    """A copy of the committed store ``name`` and what it holds (``name``.json)."""
    root = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), root)
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        expected = json.load(f)
    return Store(LocalBackend(str(root)), cache_dir=False), expected


@pytest.fixture
def legacy(tmp_path):
    return _fixture_store(tmp_path, "store-v1")


def _sha256_tree(path: str) -> dict:
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return {"": hashlib.sha256(f.read()).hexdigest()}
    out = {}
    for d, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                out[os.path.relpath(os.path.join(d, name), path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_old_manifests_read_back_byte_for_byte(legacy, tmp_path):
    store, expected = legacy
    assert store.versions("m") == ["1", "2"] and store.tags("m") == {"latest": "2", "prod": "2"}
    for ref, files in expected.items():
        dest = tmp_path / ref.replace("@", "-")
        m = store.get(ref, str(dest))
        assert _sha256_tree(str(dest)) == files
        assert all(f.chunker is None for f in m.files)  # written before chunkers were recorded
    assert (tmp_path / "d-v1" / "empty").is_dir()
    assert store.verify(full=True).problems == []


def test_old_store_takes_new_versions_that_share_its_chunks(legacy, tmp_path):
    store, _ = legacy
    store.get("m@2", str(tmp_path / "m2"))
    store.put(str(tmp_path / "m2"), "m", chunk_size=65536, chunker="fixed")
    assert store.last_transfer.sent_chunks == 0
    report = store.stats("m")
    assert [v["chunker"] for v in report["models"][0]["versions"]] == ["fixed 64 KiB"] * 3


# tests/fixtures/store-v2-packs (tests/fixtures/make_store_v2_packs.py, by the cas that introduced packs):
# manifest format 2 must stay readable by every later cas, as format 1 does.

@pytest.fixture
def packed(tmp_path):
    return _fixture_store(tmp_path, "store-v2-packs")


def test_a_packed_store_reads_back_byte_for_byte_and_verifies(packed, tmp_path):
    store, expected = packed
    for ref, files in expected.items():
        dest = tmp_path / ref.replace("@", "-")
        m = store.get(ref, str(dest))
        assert m.packed and _sha256_tree(str(dest)) == files
    assert store.verify(full=True).problems == []
    stats = store.stats()
    assert (stats["objects"], stats["packs"]) == (5, 4)  # one chunk object, four packs
    report = store.gc(grace=0)
    assert (report.deleted_chunks, report.deleted_packs, report.referenced_packs) == (0, 0, 4)


def test_a_packed_store_takes_a_fine_tune_that_reuses_its_packs(packed, tmp_path):
    store, _ = packed
    store.get("d@v2", str(tmp_path / "d"))
    (tmp_path / "d" / "t0.bin").write_bytes(b"fine-tuned")
    m = store.put(str(tmp_path / "d"), "d", chunk_size=65536, pack_below=65536)
    t = store.last_transfer
    assert (t.sent_chunks, t.sent_packs, t.reused_packed_chunks) == (1, 1, len(m.packed) - 1)
    assert store.verify(full=True).problems == []
