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


@pytest.fixture
def legacy(tmp_path):
    root = tmp_path / "store"
    shutil.copytree(os.path.join(FIXTURES, "store-v1"), root)
    with open(os.path.join(FIXTURES, "store-v1.json")) as f:
        expected = json.load(f)
    return Store(LocalBackend(str(root)), cache_dir=False), expected


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
