"""The `cas` command line: output, --json, exit codes and one-line errors."""

import json
import logging
import os
import subprocess
import sys

import pytest

from cas.cli import main


@pytest.fixture
def cas(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAS_CACHE_DIR", str(tmp_path / "cache"))
    store = str(tmp_path / "store")

    def run(*args):
        code = main(["--store", store, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_put_ls_show_get_stats(cas, tmp_path):
    src = tmp_path / "model.h5"
    src.write_bytes(b"weights" * 200_000)
    code, out, err = cas("put", str(src), "net", "--chunk-size", "256KiB", "--meta", "team=vision")
    assert code == 0 and "stored net@1" in out and err == ""
    code, out, _ = cas("put", str(src), "net", "--json", "--chunk-size", "256KiB")
    assert json.loads(out)["sent_chunks"] == 0
    code, out, _ = cas("ls", "--json")
    assert json.loads(out) == [{"model": "net", "versions": 2, "tags": {"latest": "2"}}]
    code, out, _ = cas("show", "net@1", "--json")
    shown = json.loads(out)
    assert shown["metadata"] == {"team": "vision"} and shown["file_list"][0]["path"] == "model.h5"
    code, out, _ = cas("get", "net", str(tmp_path / "back.h5"))
    assert code == 0 and (tmp_path / "back.h5").read_bytes() == src.read_bytes()
    code, out, _ = cas("stats", "net", "--json")
    report = json.loads(out)
    assert report["models"][0]["dedup_ratio"] == 2.0
    code, out, _ = cas("stats")
    assert "dedup 2.0x" in out


def test_put_codec_choice_shows_in_show_and_stats(cas, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights" * 200_000)
    assert cas("put", str(src), "net", "--codec", "raw")[0] == 0
    assert "codec raw" in cas("show", "net@1")[1]
    assert json.loads(cas("show", "net@1", "--json")[1])["codec"] == "raw"
    code, out, _ = cas("stats", "net")
    assert "codec raw: 1 chunk, 1.3 MiB raw, 1.3 MiB stored (100.0%)" in out
    with pytest.raises(SystemExit) as exc:
        cas("put", str(src), "net", "--codec", "lz4")
    assert exc.value.code == 2


def test_tag_rollback_history_rm(cas, tmp_path):
    src = tmp_path / "w"
    src.write_bytes(b"x")
    cas("put", str(src), "m")
    cas("put", str(src), "m")
    assert cas("tag", "m@1", "prod")[1].strip() == "prod -> 1"
    assert cas("rollback", "m")[1].strip() == "m:latest -> 1"
    code, out, _ = cas("history", "m", "--json")
    assert [e["op"] for e in json.loads(out)] == ["set", "set", "rollback"]
    code, _, err = cas("rm", "m@1")
    assert code == 1 and err.count("\n") == 1 and "tagged prod" in err
    assert cas("rm", "m@1", "--force")[0] == 0
    assert cas("untag", "m", "prod")[0] == 1


@pytest.mark.parametrize("args, message", [
    (["get", "ghost", "out"], "no model named 'ghost'"),
    (["get", "bad/name", "out"], "model name 'bad/name' is not allowed"),
    (["put", "/no/such/file", "m"], "no such file or directory"),
])
def test_errors_are_one_line_with_exit_status_1(cas, args, message):
    code, out, err = cas(*args)
    assert code == 1
    assert err.startswith("cas: ") and err.count("\n") == 1 and message in err


def test_unknown_store_scheme_is_a_clean_error(capsys):
    assert main(["--store", "ftp://x/y", "ls"]) == 1
    assert "unknown store URL scheme 'ftp'" in capsys.readouterr().err


def test_a_bad_size_is_a_usage_error_naming_it(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["put", "x", "m", "--chunk-size", "four"])
    assert exc.value.code == 2 and "not a size: 'four'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, option, message", [
    (["put", "x", "m", "--chunk-size", "0"], "--chunk-size", "between 65536 and 268435456"),
    (["put", "x", "m", "--level", "99"], "--level", "from 1 to 22"),
    (["put", "x", "m", "--chunker", "cdc", "--chunk-size", "8MiB"], "--chunk-size", "average chunk size"),
    (["put", "x", "m", "--pack-below", "1TiB"], "--pack-below", "at most the pack size"),
    (["--workers", "0", "ls"], "--workers", "at least 1"),
    (["--workers", "-3", "ls"], "--workers", "at least 1"),
    (["gc", "--grace", "-5"], "--grace", ">= 0"),
    (["gc", "--grace", "nan"], "--grace", ">= 0"),
    (["predict", "m", "in.npy", "-o", "o.npy", "--processes", "0"], "--processes", "at least 1"),
])
def test_an_out_of_range_option_is_a_usage_error_naming_it(capsys, argv, option, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument {option}: " in err and message in err and "ValueError" not in err


def test_console_script_exit_status_and_verbose_traceback(tmp_path):
    env = {"CAS_STORE": str(tmp_path / "s"), "CAS_CACHE_DIR": str(tmp_path / "c"), "PATH": ""}
    quiet = subprocess.run([sys.executable, "-m", "cas", "get", "nothing", "x"], capture_output=True, text=True, env=env)
    assert quiet.returncode == 1 and quiet.stderr.strip() == (
        f"cas: no model named 'nothing' in file://{tmp_path / 's'}; `cas ls` lists the models")
    loud = subprocess.run([sys.executable, "-m", "cas", "-v", "get", "nothing", "x"], capture_output=True, text=True, env=env)
    assert loud.returncode != 0 and "Traceback" in loud.stderr


def test_put_chunker_choice_verbose_reasons_and_stats(cas, tmp_path, caplog):
    src = tmp_path / "model.h5"
    src.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 2000)  # HDF5 magic, no HDF5 inside
    with caplog.at_level(logging.INFO, logger="cas"):  # what -v prints
        code, out, err = cas("-v", "put", str(src), "net", "--chunk-size", "64KiB")
    assert code == 0 and "model.h5: cut fixed (HDF5" in caplog.text
    code, out, err = cas("put", str(src), "net", "--chunker", "cdc", "--chunk-size", "64KiB", "--json")
    assert code == 0 and err == ""
    code, out, _ = cas("stats", "net")
    assert "fixed 64 KiB" in out and "cdc avg 64 KiB" in out and "objects per 100 MB" in out
    code, out, _ = cas("show", "net@2", "--json")
    assert json.loads(out)["file_list"][0]["chunker"] == "cdc avg 64 KiB"
    with pytest.raises(SystemExit) as exc:  # a usage error (exit 2), see test_an_out_of_range_option...
        cas("put", str(src), "net", "--chunker", "cdc", "--chunk-size", "8MiB")
    assert exc.value.code == 2


def test_init_fixes_the_chunk_hash_and_every_command_follows_it(cas, tmp_path):
    code, out, err = cas("init", "--chunk-hash", "blake3")
    assert code == 0 and "with blake3-256 chunk keys" in out and err == ""
    src = tmp_path / "w.bin"
    src.write_bytes(b"w" * 300_000)
    assert cas("put", str(src), "m", "--strong", "sha256")[0] == 0
    code, out, _ = cas("show", "m")
    assert "1 chunk keyed by blake3-256, sha256 per file" in out
    code, out, err = cas("init", "--chunk-hash", "xxh3")
    assert code == 1 and err.count("\n") == 1 and "already exists (with blake3-256 chunk keys)" in err


def test_verify_counts_in_words_that_agree_with_the_number(cas, tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(b"w" * 1000)
    cas("put", str(src), "m")
    code, out, _ = cas("verify", "--full")
    assert code == 0 and out.strip().endswith("read and decoded 1 chunk of 1 version: 0 problems")
    chunk = next(p for p in (tmp_path / "store" / "packs").rglob("*") if p.is_file())  # a small chunk: packed
    chunk.unlink()
    code, out, err = cas("verify")
    assert code == 1 and out.strip().endswith(": 1 problem") and err.startswith("cas: 1 problem found;")


def test_the_global_chunk_hash_refuses_a_store_keyed_otherwise(cas, tmp_path, monkeypatch):
    src = tmp_path / "w.bin"
    src.write_bytes(b"w" * 1000)
    assert cas("--chunk-hash", "blake3", "put", str(src), "m")[0] == 0  # a new store: created with blake3 keys
    code, out, _ = cas("show", "m")
    assert "keyed by blake3-256" in out
    code, _, err = cas("--chunk-hash", "xxh3-128", "ls")
    assert code == 1 and err.count("\n") == 1 and "uses blake3-256 chunk keys, not xxh3-128" in err
    code, _, err = cas("--chunk-hash", "blake3", "init", "--chunk-hash", "xxh3")
    assert code == 1 and "two chunk hashes (blake3-256 and xxh3-128)" in err
    monkeypatch.setenv("CAS_CHUNK_HASH", "xxh3")
    from cas.cli import build_parser
    assert build_parser().parse_args(["ls"]).expect_chunk_hash == "xxh3"


def test_put_packs_small_chunks_unless_told_not_to(cas, tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(300_000))
    code, out, _ = cas("put", str(src), "m", "--json")
    assert code == 0 and json.loads(out)["sent_packs"] == 1 and json.loads(out)["packs"] == 1
    assert sum(p.is_file() for p in (tmp_path / "store" / "packs").rglob("*")) == 1
    (tmp_path / "v.bin").write_bytes(os.urandom(300_000))
    code, out, _ = cas("put", str(tmp_path / "v.bin"), "m", "--pack-below", "0")
    assert code == 0 and "in 1 new pack" not in out
    assert sum(p.is_file() for p in (tmp_path / "store" / "chunks").rglob("*")) == 1
    code, out, _ = cas("show", "m@1")
    assert "1 packed in 1 pack" in out
    with pytest.raises(SystemExit) as exc:  # a usage error (argparse, exit 2)
        cas("put", str(src), "m", "--pack-below", "32MiB")
    assert exc.value.code == 2


def test_a_store_path_that_is_a_file_says_what_to_check(tmp_path, capsys):
    (tmp_path / "w.bin").write_bytes(b"weights")
    assert main(["--store", str(tmp_path / "w.bin"), "put", str(tmp_path / "w.bin"), "m"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "w.bin" in err and "check the --store path" in err


def test_one_damaged_tag_does_not_hide_the_other_models_and_verify_says_what_fixes_what(tmp_path, capsys):
    store = str(tmp_path / "s")
    (tmp_path / "w.bin").write_bytes(b"weights")
    for model in ("a", "b"):
        assert main(["--store", store, "put", str(tmp_path / "w.bin"), model]) == 0
    entry = next((tmp_path / "s" / "refs" / "a" / "latest").iterdir())
    entry.chmod(0o644)
    entry.write_bytes(b"\xc1 not msgpack")
    (tmp_path / "s" / "manifests" / "b" / "1.msgpack").chmod(0o644)
    (tmp_path / "s" / "manifests" / "b" / "1.msgpack").write_bytes(b"hello world")
    capsys.readouterr()
    assert main(["--store", store, "ls"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("a\t1 version") and out.splitlines()[1].startswith("b\t1 version")
    assert "tag entry a:latest" in err and "corrupt" in err
    assert main(["--store", store, "verify"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "another copy of the store, or goes with `cas rm`" in last and "cas repair" not in last


def test_ls_of_a_store_path_with_nothing_there_says_so(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "mistyped"), "ls"]) == 0
    out = capsys.readouterr().out
    assert "no models in" in out and "nothing is there yet: check --store" in out
    assert not (tmp_path / "mistyped").exists()  # listing creates no store
