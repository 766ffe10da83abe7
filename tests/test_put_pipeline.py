"""How a put moves a file: one read of each byte, each chunk asked about once, sending under way
while the file is still being read (cas.transfer.EagerSends)."""

import os
import threading

import pytest

from cas import CasError, transfer
from cas.layout import chunk_key
from tests.conftest import write

KIB = 1024
CHUNK = 64 * KIB


def counting(monkeypatch, obj, name: str, record) -> None:
    """Wrap ``obj.name`` so each call first passes its arguments to ``record``."""
    real = getattr(obj, name)

    def wrapped(*args, **kwargs):
        record(*args, **kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapped)


def test_a_put_reads_each_byte_of_its_file_once(local_store, tmp_path, monkeypatch):
    src = write(tmp_path / "w.bin", os.urandom(32 * CHUNK + 5))
    read = []
    counting(monkeypatch, transfer, "read_piece", lambda source, offset, length: read.append(length))
    local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    assert sum(read) == src.stat().st_size  # a file bigger than the page cache is read from disk once
    local_store.get("m", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == src.read_bytes()


def test_a_put_asks_the_store_about_each_chunk_once(store, tmp_path, monkeypatch):
    """On WebHDFS or S3 every question is a request: asking twice doubled a put's round trips."""
    src = write(tmp_path / "w.bin", os.urandom(24 * CHUNK))
    asked = []
    counting(monkeypatch, store.backend, "missing",
             lambda keys: asked.extend(k for k in keys if k.startswith("chunks/")))
    store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    assert sorted(asked) == sorted({chunk_key(d.hex()) for d in store.manifest("m").files[0].digests})
    asked.clear()
    store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)  # again: everything is there
    assert len(asked) == 24 and store.last_transfer.sent_chunks == 0


def test_a_put_sends_chunks_before_it_has_read_the_whole_file(local_store, tmp_path, monkeypatch):
    src = write(tmp_path / "w.bin", os.urandom(64 * CHUNK))
    read, read_when_first_sent = [], []
    counting(monkeypatch, transfer, "read_piece", lambda *a: read.append(1))
    counting(monkeypatch, local_store.backend, "create",
             lambda key, data: key.startswith("chunks/") and not read_when_first_sent and read_when_first_sent.append(len(read)))
    local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    assert read_when_first_sent[0] < 64  # compression overlaps the hashing instead of waiting for it


def test_a_chunk_a_version_repeats_is_sent_once(local_store, tmp_path, monkeypatch):
    block = os.urandom(CHUNK)
    src = write(tmp_path / "w.bin", block * 12 + os.urandom(4 * CHUNK))
    created = []
    lock = threading.Lock()

    def record(key, data):
        with lock:
            created.append(key)

    counting(monkeypatch, local_store.backend, "create", record)
    m = local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    chunks = [k for k in created if k.startswith("chunks/")]
    assert len(chunks) == len(set(chunks)) == 5 == local_store.last_transfer.sent_chunks
    assert len(m.files[0].digests) == 16
    local_store.get("m", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == src.read_bytes()


def test_a_manifest_too_big_for_its_names_alone_is_refused_before_any_chunk_is_sent(local_store, tmp_path,
                                                                                     monkeypatch):
    root = tmp_path / "model"
    for i in range(40):
        write(root / f"shard-{i:03d}-{'x' * 100}.bin", os.urandom(2 * CHUNK))
    monkeypatch.setattr("cas.store.MAX_MANIFEST_BYTES", 4000)
    with pytest.raises(CasError, match="manifest of .* would be .* bytes"):
        local_store.put(str(root), "m", chunk_size=CHUNK, pack_below=0)
    assert local_store.backend.list("chunks") == []  # nothing sent that no version could ever name


def test_a_manifest_too_big_for_its_chunk_lists_is_refused_before_any_chunk_is_sent(local_store, tmp_path,
                                                                                    monkeypatch):
    src = write(tmp_path / "w.bin", os.urandom(200 * CHUNK))
    monkeypatch.setattr("cas.store.MAX_MANIFEST_BYTES", 3000)  # 200 chunk entries do not fit
    with pytest.raises(CasError, match="too many files or chunks"):
        local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    assert local_store.backend.list("chunks") == []


def test_a_chunk_another_writer_stored_first_is_not_counted_as_sent(local_store, tmp_path, monkeypatch):
    src = write(tmp_path / "w.bin", os.urandom(8 * CHUNK))
    real = local_store.backend.create

    def lose_the_race(key, data):
        real(key, data)
        if key.startswith("chunks/"):
            raise FileExistsError(key)  # as if another put had created it a moment before

    monkeypatch.setattr(local_store.backend, "create", lose_the_race)
    local_store.put(str(src), "m", chunk_size=CHUNK, pack_below=0)
    assert local_store.last_transfer.sent_chunks == 0
    local_store.get("m", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
