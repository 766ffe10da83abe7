"""Every backend that ships runs the same conformance suite (the WebHDFS one has its own file)."""

import os
import time

import pytest

from cas.backends import Backend, LocalBackend, MemoryBackend, open_backend
from cas.backends.base import read_into
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

    @pytest.fixture
    def raw_write(self, backend):
        def write(key, data):
            path = os.path.join(backend.root, *key.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)

        return write


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()

    @pytest.fixture
    def raw_read(self, backend):
        return backend.objects.get

    @pytest.fixture
    def raw_write(self, backend):
        def write(key, data):
            backend.objects[key] = bytes(data)
            backend.mtimes[key] = time.time()

        return write


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


class _ReadOnlyDict(Backend):
    """The least a backend writes: the abstract methods; read_into comes from the base class."""

    url, max_workers = "test://dict", 1

    def __init__(self, objects):
        self.objects, self.reads = objects, []

    def read(self, key, offset=0, length=None):
        self.reads.append((key, offset, length))
        data = self.objects[key]
        return data[offset:] if length is None else data[offset:offset + length]

    def create(self, key, data): raise NotImplementedError
    def delete(self, key): raise NotImplementedError
    def list(self, prefix): raise NotImplementedError
    def walk(self, prefix): raise NotImplementedError
    def missing(self, keys): raise NotImplementedError
    def flush(self): pass
    def close(self): pass


def test_the_default_read_into_reads_at_most_one_byte_past_the_buffer_and_leaves_it_alone_if_too_long():
    backend = _ReadOnlyDict({"k": b"0123456789"})
    buf = bytearray(b"x" * 12)
    assert backend.read_into("k", buf) == 10 and buf == b"0123456789xx"
    assert bytes(read_into(backend, "k", buf)) == b"0123456789"
    small = bytearray(b"y" * 9)
    with pytest.raises(BufferError, match="'k' in test://dict is longer than the 9-byte buffer"):
        backend.read_into("k", small)
    assert small == b"y" * 9
    assert backend.reads[-1] == ("k", 0, 10)  # bounded: len(buffer) + 1


def test_a_backend_missing_a_contract_method_cannot_be_made():
    class Partial(Backend):
        def read(self, key, offset=0, length=None):
            return b""

    with pytest.raises(TypeError, match="abstract methods .*create"):
        Partial()


def test_every_shipped_backend_is_a_backend(tmp_path):
    from cas.backends.s3 import S3Backend
    from cas.backends.webhdfs import WebHdfsBackend

    assert isinstance(LocalBackend(str(tmp_path)), Backend) and isinstance(MemoryBackend(), Backend)
    assert issubclass(S3Backend, Backend) and issubclass(WebHdfsBackend, Backend)


def test_closing_one_memory_handle_leaves_the_others_and_the_objects():
    first, second = open_backend("memory://shared-close"), open_backend("memory://shared-close")
    first.create("k", b"v")
    first.close()
    assert second.read("k") == b"v"
    assert open_backend("memory://shared-close").read("k") == b"v"
    with pytest.raises(ValueError, match="store memory://shared-close is closed"):
        first.read("k")
