import os
import uuid

import pytest

from cas import Store

# Tests never touch the user's real store or cache.
os.environ.pop("CAS_STORE", None)


@pytest.fixture(scope="session")
def webhdfs_server():
    """One WebHDFS test server (namenode + datanode on loopback) for the whole run."""
    from cas.testing.webhdfs_server import WebHdfsServer

    with WebHdfsServer() as server:
        yield server


@pytest.fixture(params=["local", "memory", "webhdfs", "webhdfs-cluster"])
def store_url(request, tmp_path):
    """A fresh, empty store of each kind the end-to-end tests run against.

    ``webhdfs`` is the project's WebHDFS test server; ``webhdfs-cluster`` is a real cluster,
    used when CAS_TEST_WEBHDFS_URL names one (e.g. webhdfs://nn:9870/tmp/cas-test?user=me).
    """
    fresh = uuid.uuid4().hex[:12]
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "memory":
        return f"memory://{fresh}"
    if request.param == "webhdfs":
        return request.getfixturevalue("webhdfs_server").store_url(root=f"/stores/{fresh}", user="cas")
    cluster = os.environ.get("CAS_TEST_WEBHDFS_URL")
    if not cluster:
        pytest.skip("set CAS_TEST_WEBHDFS_URL=webhdfs://nn:9870/tmp/cas-test?user=me to run against a real cluster")
    base, _, query = cluster.partition("?")
    return f"{base.rstrip('/')}/{fresh}" + (f"?{query}" if query else "")


@pytest.fixture(params=["local", "webhdfs"])
def process_shared_url(request, tmp_path):
    """A fresh store that other processes can open too (so not memory://)."""
    if request.param == "local":
        return str(tmp_path / "store")
    fresh = uuid.uuid4().hex[:12]
    return request.getfixturevalue("webhdfs_server").store_url(root=f"/stores/{fresh}", user="cas")


@pytest.fixture
def store(store_url, tmp_path):
    s = Store.open(store_url, cache_dir=str(tmp_path / "cache"), n_workers=4)
    yield s
    s.close()


@pytest.fixture
def local_store(tmp_path):
    s = Store.open(str(tmp_path / "store"), cache_dir=str(tmp_path / "cache"), n_workers=4)
    yield s
    s.close()


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
