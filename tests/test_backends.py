"""Every backend that ships runs the same conformance suite (the WebHDFS one has its own file)."""

import os

import pytest

from cas.backends import LocalBackend, MemoryBackend, open_backend
from cas.testing.conformance import BackendConformance


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path):
        return LocalBackend(str(tmp_path / "store"))

    @pytest.fixture
    def raw_read(self, backend):
        def read(key):
            path = os.path.join(backend.root, *key.split("/"))
            try:
                with open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None

        return read


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()

    @pytest.fixture
    def raw_read(self, backend):
        return backend.objects.get


def test_open_backend_understands_paths_and_file_urls(tmp_path):
    assert open_backend(str(tmp_path)).root == str(tmp_path)
    assert open_backend(f"file://{tmp_path}").root == str(tmp_path)


def test_open_backend_rejects_unknown_schemes_and_options(tmp_path):
    with pytest.raises(ValueError, match="unknown store URL scheme 'ftp'"):
        open_backend("ftp://host/x")
    with pytest.raises(TypeError):
        open_backend(str(tmp_path), colour="blue")
    with pytest.raises(ValueError, match="names host"):
        open_backend("file://otherhost/x")
