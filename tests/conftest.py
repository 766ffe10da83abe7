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


@pytest.fixture(scope="session")
def s3_server_session():
    """One moto S3 server (in-process, on loopback) for the whole run."""
    from cas.testing.s3_server import S3TestServer

    with S3TestServer() as server:
        yield server


@pytest.fixture
def s3_server(s3_server_session):
    """The moto S3 server, emptied after the test (``POST /moto-api/reset``)."""
    yield s3_server_session
    s3_server_session.reset()


def s3_bucket_url(fresh: str) -> str:
    """A fresh prefix under CAS_TEST_S3_URL (a real bucket), or skip."""
    bucket = os.environ.get("CAS_TEST_S3_URL")
    if not bucket:
        pytest.skip("set CAS_TEST_S3_URL=s3://BUCKET/PREFIX?region=R (credentials from the AWS chain) "
                    "to run against a real bucket")
    base, _, query = bucket.partition("?")
    return f"{base.rstrip('/')}/{fresh}" + (f"?{query}" if query else "")


@pytest.fixture(params=["local", "memory", "webhdfs", "webhdfs-cluster", "s3", "s3-bucket"])
def store_url(request, tmp_path):
    """A fresh, empty store of each kind the end-to-end tests run against.

    ``webhdfs`` is the project's WebHDFS test server; ``webhdfs-cluster`` is a real cluster,
    used when CAS_TEST_WEBHDFS_URL names one (e.g. webhdfs://nn:9870/tmp/cas-test?user=me).
    ``s3`` is moto's S3 server; ``s3-bucket`` a real bucket named by CAS_TEST_S3_URL.
    """
    fresh = uuid.uuid4().hex[:12]
    if request.param == "s3":
        return request.getfixturevalue("s3_server").store_url(prefix=fresh)
    if request.param == "s3-bucket":
        return s3_bucket_url(fresh)
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


def chunk_object(root, manifest, digest) -> tuple[str, int, int]:
    """(file path, offset, stored length) of a chunk's object in a local store at ``root``, where
    ``manifest`` says it lives: its own object, or its range of a pack."""
    where = manifest.location(digest)
    path = os.path.join(str(root), *where.key.split("/"))
    length = where.length if where.length is not None else os.path.getsize(path)
    return path, where.offset, length


def flip_byte(root, manifest, digest, from_end: int = 1) -> None:
    """Damage a chunk where it is stored: flip one byte ``from_end`` bytes before its end."""
    path, offset, length = chunk_object(root, manifest, digest)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[offset + length - from_end] ^= 0xFF
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(bytes(data))
