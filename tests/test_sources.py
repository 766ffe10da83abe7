"""What a put accepts from the local disk, and what a get may replace there."""

from __future__ import annotations

import logging
import os

import pytest

from cas import Store
from cas.cli import main as cas_main
from cas.errors import BadName, CasError, SourceChanged

CHUNK = 64 * 1024


def _chunks(store: Store) -> int:
    """Chunk objects and packs: whatever a put sends."""
    return len(list(store.backend.walk("chunks"))) + len(list(store.backend.walk("packs")))


@pytest.mark.parametrize("name", [b"line\nbreak.bin", b"back\\slash.bin", b"latin1-\xe9t\xe9.bin", b"bell\x07.bin"])
def test_put_refuses_a_name_no_reader_can_materialise_before_sending_anything(local_store, tmp_path, name):
    src = tmp_path / "model"
    src.mkdir()
    (src / "ok.bin").write_bytes(os.urandom(CHUNK * 2))
    with open(os.path.join(os.fsencode(src), name), "wb") as f:
        f.write(os.urandom(CHUNK))
    with pytest.raises(BadName, match="rename it"):
        local_store.put(str(src), "m", chunk_size=CHUNK)
    assert _chunks(local_store) == 0 and local_store.models() == []
    assert local_store.gc().versions == 0  # and the store stays usable


def test_a_file_rewritten_while_it_is_put_is_refused(local_store, tmp_path):
    old, new = os.urandom(4 * CHUNK), os.urandom(4 * CHUNK)
    src = tmp_path / "w.bin"
    src.write_bytes(new)
    # both contents already in the store, as objects of their own (which a put of any model takes as they
    # are): nothing is re-read, so nothing else notices
    local_store.put(str(src), "seen", chunk_size=CHUNK, pack_below=0)
    src.write_bytes(old)
    local_store.put(str(src), "seen", chunk_size=CHUNK, pack_below=0)
    real_missing = local_store.backend.missing

    def rewrite_then_answer(keys):
        with open(src, "r+b") as f:  # rewritten in place, same size
            f.write(new[: 2 * CHUNK])
        return real_missing(keys)

    local_store.backend.missing = rewrite_then_answer
    with pytest.raises(SourceChanged, match="changed while it was being stored"):
        local_store.put(str(src), "m", chunk_size=CHUNK)
    assert local_store.versions("m") == []


def test_symlinked_directories_are_followed_and_loops_refused(local_store, tmp_path):
    elsewhere = tmp_path / "shared-assets"
    elsewhere.mkdir()
    (elsewhere / "vocab.txt").write_bytes(b"tokens")
    src = tmp_path / "model"
    (src / "variables").mkdir(parents=True)
    (src / "variables" / "data").write_bytes(b"weights")
    (src / "assets").symlink_to(elsewhere, target_is_directory=True)
    m = local_store.put(str(src), "m", chunk_size=CHUNK)
    assert sorted(f.path for f in m.files) == ["assets/vocab.txt", "variables/data"]
    local_store.get("m", str(tmp_path / "out"))
    assert (tmp_path / "out" / "assets" / "vocab.txt").read_bytes() == b"tokens"
    assert not (tmp_path / "out" / "assets").is_symlink()
    (src / "variables" / "again").symlink_to(src, target_is_directory=True)
    with pytest.raises(CasError, match="symlink loop"):
        local_store.put(str(src), "m", chunk_size=CHUNK)
    (src / "variables" / "again").unlink()
    (src / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(CasError, match="dangling symlink"):
        local_store.put(str(src), "m", chunk_size=CHUNK)


def test_a_cache_that_cannot_be_written_does_not_fail_a_get(tmp_path, caplog):
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_bytes(b"a file where the cache directory should be")  # (root ignores a read-only mode)
    store = Store.open(str(tmp_path / "store"), cache_dir=str(not_a_dir))
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(3 * CHUNK))
    store.put(str(src), "m", chunk_size=CHUNK)
    with caplog.at_level(logging.WARNING, logger="cas"):
        store.get("m", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert "cas works without it" in caplog.text


def test_cli_get_force_onto_a_directory_of_notes_refuses_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAS_CACHE_DIR", str(tmp_path / "cache"))
    store = str(tmp_path / "store")
    (tmp_path / "w.bin").write_bytes(b"model")
    assert cas_main(["--store", store, "put", str(tmp_path / "w.bin"), "m"]) == 0
    precious = tmp_path / "precious" / "project"
    precious.mkdir(parents=True)
    (precious / "notes.txt").write_bytes(b"work")
    capsys.readouterr()
    assert cas_main(["--store", store, "get", "m", str(tmp_path / "precious"), "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0] and "precious" in err[0]
    assert (precious / "notes.txt").read_bytes() == b"work"
    monkeypatch.chdir(tmp_path / "precious")
    assert cas_main(["--store", store, "get", "m", ".", "--force"]) == 1
    assert (precious / "notes.txt").read_bytes() == b"work"
