import os
import uuid

import pytest

from cas import Store

# Tests never touch the user's real store or cache.
os.environ.pop("CAS_STORE", None)


@pytest.fixture(params=["local", "memory"])
def store_url(request, tmp_path):
    """A fresh, empty store of each kind the end-to-end tests run against."""
    if request.param == "local":
        return str(tmp_path / "store")
    return f"memory://{uuid.uuid4().hex}"


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
