"""webhdfs://...?replication=N: chunk objects get N replicas, manifests and tags the cluster default."""

from __future__ import annotations

import os
import uuid

import pytest
import requests

from cas import Store
from cas.backends.webhdfs_config import parse_webhdfs_url
from tests.conftest import write


def _replication(server, path: str) -> int:
    answer = requests.get(f"{server.namenode_url}/webhdfs/v1{path}", params={"op": "GETFILESTATUS", "user.name": "cas"},
                          timeout=10)
    answer.raise_for_status()
    return answer.json()["FileStatus"]["replication"]


def test_chunks_get_the_replication_asked_for_and_manifests_the_default(webhdfs_server, tmp_path):
    root = f"/stores/{uuid.uuid4().hex[:12]}"
    url = webhdfs_server.store_url(root=root, user="cas") + "&replication=2"
    with Store.open(url, cache_dir=False) as store:
        m = store.put(str(write(tmp_path / "model.bin", os.urandom(3 << 20))), "net", chunk_size=1 << 20,
                      tags=["prod"])
        chunk_keys = [o.key for o in store.backend.walk("chunks")]
    assert len(chunk_keys) == 3 == len(m.files[0].digests)
    assert {_replication(webhdfs_server, f"{root}/{k}") for k in chunk_keys} == {2}
    assert _replication(webhdfs_server, f"{root}/manifests/net/1.msgpack") == 3  # the cluster default
    assert _replication(webhdfs_server, f"{root}/refs/net/prod/00000001") == 3


def test_packs_get_the_chunk_replication_too(webhdfs_server, tmp_path):
    """A pack holds chunk data: the replication asked for chunks applies to it."""
    root = f"/stores/{uuid.uuid4().hex[:12]}"
    url = webhdfs_server.store_url(root=root, user="cas") + "&replication=2"
    with Store.open(url, cache_dir=False) as store:
        m = store.put(str(write(tmp_path / "small.bin", os.urandom(300_000))), "net")
        pack_keys = [o.key for o in store.backend.walk("packs")]
    assert len(pack_keys) == 1 == len(m.pack_ids())
    assert _replication(webhdfs_server, f"{root}/{pack_keys[0]}") == 2


@pytest.mark.parametrize("value", ["0", "x", "513", ""])
def test_a_bad_replication_is_refused(value):
    with pytest.raises(ValueError, match="replication must be a whole number from 1 to 512"):
        parse_webhdfs_url(f"webhdfs://nn/models?user=me&replication={value}")


def test_replication_defaults_to_the_cluster():
    assert parse_webhdfs_url("webhdfs://nn/models?user=me").replication is None
