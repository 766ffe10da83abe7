"""cas.dedup and tools/dedup_stats.py: exact figures on versions whose changes are known."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from cas import Store
from cas.dedup import NEW, REPEATED, SHARED, analyze, analyze_local, analyze_store, in_sample, largest_regions
from cas.manifest import FileEntry, Manifest

from tests.conftest import write

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "dedup_stats.py"
K64 = 64 * 1024
K256 = 256 * 1024
MIB = 1 << 20
TAIL = 100 * 1024  # bytes v3 appends to a.bin
CFG1, CFG2 = b'{"lr": 0.1}', b'{"lr": 0.2}'


def _load_tool():
    spec = importlib.util.spec_from_file_location("dedup_stats", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> list[str]:
    """Three versions of a directory model; what changes is known to the byte.

    v1: a.bin = A (1 MiB random), cfg.json = CFG1, z.bin = 256 KiB of zeros.
    v2: a.bin = A with bytes [5*64Ki, 6*64Ki) replaced, the rest identical.
    v3: a.bin = v2's + 100 KiB appended, cfg.json = CFG2, z.bin same, b.bin = a copy of v1's a.bin.
    """
    root = tmp_path_factory.mktemp("versions")
    rng = random.Random(7)
    a = rng.randbytes(MIB)
    a2 = a[:5 * K64] + rng.randbytes(K64) + a[6 * K64:]
    tail = rng.randbytes(TAIL)
    zeros = bytes(K256)
    layout = {
        "v1": {"a.bin": a, "cfg.json": CFG1, "z.bin": zeros},
        "v2": {"a.bin": a2, "cfg.json": CFG1, "z.bin": zeros},
        "v3": {"a.bin": a2 + tail, "cfg.json": CFG2, "z.bin": zeros, "b.bin": a},
    }
    for version, files in layout.items():
        for name, data in files.items():
            write(root / version / name, data)
    return [str(root / v) for v in layout]


@pytest.fixture(scope="module")
def local_report(versions) -> dict:
    return analyze_local(versions, [K64, K256], n_workers=2)


def _by_size(result: dict) -> dict[int, dict]:
    return {r["chunk_size"]: r for r in result["reports"]}


def _file(version_row: dict, path: str) -> dict:
    return next(f for f in version_row["file_detail"] if f["path"] == path)


# -- exact figures -------------------------------------------------------------------------------


LOGICAL = [MIB + len(CFG1) + K256, MIB + len(CFG1) + K256, MIB + TAIL + len(CFG2) + K256 + MIB]


def test_new_shared_repeated_bytes_are_exact_per_chunk_size(local_report):
    r64, r256 = _by_size(local_report)[K64], _by_size(local_report)[K256]
    assert [v["logical_bytes"] for v in r64["versions"]] == LOGICAL
    # 64 KiB: the zeros are one chunk repeated 4 times; v2 changes one chunk; v3 brings the tail and a new cfg.
    assert [v["new_raw_bytes"] for v in r64["versions"]] == [MIB + len(CFG1) + K64, K64, TAIL + len(CFG2)]
    assert [v["repeated_raw_bytes"] for v in r64["versions"]] == [3 * K64, 0, 0]
    assert [v["shared_raw_bytes"] for v in r64["versions"]] == [0, LOGICAL[1] - K64, LOGICAL[2] - TAIL - len(CFG2)]
    assert r64["unique_bytes"] == MIB + len(CFG1) + K64 + K64 + TAIL + len(CFG2)
    assert r64["unique_chunks"] == 16 + 1 + 1 + 1 + 2 + 1
    # 256 KiB: the changed 64 KiB costs its whole 256 KiB chunk; the zeros are one chunk.
    assert [v["new_raw_bytes"] for v in r256["versions"]] == [LOGICAL[0], K256, TAIL + len(CFG2)]
    assert [v["repeated_raw_bytes"] for v in r256["versions"]] == [0, 0, 0]
    assert r256["unique_bytes"] == LOGICAL[0] + K256 + TAIL + len(CFG2)
    for r in (r64, r256):
        assert r["logical_bytes"] == sum(LOGICAL)
        assert r["dedup_ratio"] == round(sum(LOGICAL) / r["unique_bytes"], 4)
        assert r["stored"]["estimated"] is False and r["stored"]["sampled_chunks"] == r["unique_chunks"]
        assert 0 < r["stored_bytes"] < r["unique_bytes"]  # the zeros compress
        for v in r["versions"]:
            assert v["new_raw_bytes"] + v["shared_raw_bytes"] + v["repeated_raw_bytes"] == v["logical_bytes"]
            assert sum(f["new_stored_bytes"] for f in v["file_detail"]) == v["new_stored_bytes"]


def test_shared_and_new_regions_at_the_right_offsets(local_report):
    r64, r256 = _by_size(local_report)[K64], _by_size(local_report)[K256]
    v1, v2, v3 = r64["versions"]
    assert [(r["offset"], r["length"], r["status"]) for r in _file(v1, "z.bin")["regions"]] == [
        (0, K64, NEW), (K64, 3 * K64, REPEATED)]
    assert [(r["offset"], r["length"], r["status"], r["chunks"]) for r in _file(v2, "a.bin")["regions"]] == [
        (0, 5 * K64, SHARED, 5), (5 * K64, K64, NEW, 1), (6 * K64, 10 * K64, SHARED, 10)]
    assert _file(v2, "a.bin")["regions"][0]["first_seen_in"] == ["v1"]
    a3 = _file(v3, "a.bin")["regions"]
    assert [(r["offset"], r["length"], r["status"], r["chunks"]) for r in a3] == [
        (0, MIB, SHARED, 16), (MIB, TAIL, NEW, 2)]
    assert a3[0]["first_seen_in"] == ["v1", "v2"]  # 15 chunks from v1, the changed one from v2
    assert _file(v3, "b.bin")["same_as"] == "v1:a.bin" and _file(v3, "z.bin")["same_as"] == "v1:z.bin"
    assert _file(v2, "cfg.json")["same_as"] == "v1:cfg.json" and _file(v3, "cfg.json")["same_as"] is None
    # At 256 KiB the change at 320 KiB makes the second chunk new.
    assert [(r["offset"], r["length"], r["status"]) for r in _file(r256["versions"][1], "a.bin")["regions"]] == [
        (0, K256, SHARED), (K256, K256, NEW), (2 * K256, 2 * K256, SHARED)]
    top = largest_regions(r64, top=2)
    assert [(t["version"], t["path"], t["offset"], t["length"]) for t in top] == [
        ("v3", "a.bin", MIB, TAIL), ("v2", "a.bin", 5 * K64, K64)]


def test_shared_matrix_is_symmetric_with_the_version_size_on_the_diagonal(local_report):
    r64, r256 = _by_size(local_report)[K64], _by_size(local_report)[K256]
    for r in (r64, r256):
        m = r["shared_raw_bytes"]["matrix"]
        assert r["shared_raw_bytes"]["versions"] == ["v1", "v2", "v3"]
        assert all(m[i][j] == m[j][i] for i in range(3) for j in range(3))
        assert [m[i][i] for i in range(3)] == [v["distinct_raw_bytes"] for v in r["versions"]]
    # At 256 KiB v1 and v2 repeat no chunk: the diagonal is their logical size. v3 holds three
    # chunks twice (b.bin is v1's a.bin, and v3's a.bin starts as v2's, which differs in one chunk).
    m = r256["shared_raw_bytes"]["matrix"]
    assert [m[i][i] for i in range(3)] == [LOGICAL[0], LOGICAL[1], LOGICAL[2] - 3 * K256]
    assert m[0][1] == LOGICAL[0] - K256  # all but the changed chunk
    assert m[0][2] == MIB + K256  # v3's b.bin is v1's a.bin, plus the zeros
    assert m[1][2] == MIB + K256  # v3's a.bin starts with v2's
    m = r64["shared_raw_bytes"]["matrix"]
    assert m[0][0] == MIB + len(CFG1) + K64  # the zero chunk counts once
    assert m[0][1] == 15 * K64 + len(CFG1) + K64
    # Only v3's tail and cfg are referenced by no other version.
    assert [v["exclusive_raw_bytes"] for v in r64["versions"]] == [0, 0, TAIL + len(CFG2)]


def test_the_local_prediction_is_what_a_store_then_holds(versions, local_report, tmp_path):
    """Put the same versions at 64 KiB: the store analysis agrees with the local one, and the
    predicted stored bytes are exactly the chunk objects' sizes on disk."""
    root = tmp_path / "store"
    with Store.open(str(root), cache_dir=False, n_workers=2) as store:
        for path in versions:
            store.put(path, "m", chunk_size=K64)
        report = analyze_store(store, "m")
        only_2_3 = analyze_store(store, "m", ["2", "3"])
    predicted = _by_size(local_report)[K64]
    on_disk = sum(p.stat().st_size for sub in ("chunks", "packs") for p in (root / sub).rglob("*") if p.is_file())
    assert report["stored_bytes"] == on_disk == predicted["stored_bytes"]
    assert report["missing_chunks"] == 0
    assert [v["version"] for v in report["versions"]] == ["1", "2", "3"]
    for key in ("new_raw_bytes", "new_stored_bytes", "shared_raw_bytes", "exclusive_stored_bytes"):
        assert [v[key] for v in report["versions"]] == [v[key] for v in predicted["versions"]], key
    assert report["shared_raw_bytes"]["matrix"] == predicted["shared_raw_bytes"]["matrix"]
    for v in report["versions"]:
        assert v["exclusive_stored_bytes"] + v["shared_stored_bytes"] == v["referenced_stored_bytes"]
    assert sum(f["new_stored_bytes"] for f in report["files"]) == report["stored_bytes"]
    # Restricted to versions 2 and 3, version 2 brings everything it holds.
    assert only_2_3["versions"][0]["new_raw_bytes"] == only_2_3["versions"][0]["distinct_raw_bytes"]


def test_the_local_prediction_names_the_codecs_put_then_uses(tmp_path):
    """Float weights take the planes codec, text zstd and noise raw: the local prediction says so
    chunk for chunk, byte for byte, and `cas stats` and the store analysis read the same back."""
    np = pytest.importorskip("numpy")
    weights = (np.random.default_rng(0).standard_normal(3 * K64, dtype=np.float32) * 0.02).tobytes()
    src = tmp_path / "v1"
    write(src / "weights.bin", weights)
    write(src / "config.json", b'{"layers": [' + b'{"units": 64, "activation": "relu"}, ' * 4000 + b"]}")
    write(src / "noise.bin", os.urandom(2 * K64))
    for policy, expected in (("auto", {"planes", "raw", "zstd"}), ("zstd", {"raw", "zstd"}), ("raw", {"raw"})):
        predicted = _by_size(analyze_local([str(src)], [K64], policy=policy, n_workers=2))[K64]
        with Store.open(str(tmp_path / f"store-{policy}"), cache_dir=False, n_workers=2) as store:
            store.put(str(src), "m", chunk_size=K64, codec=policy)
            from_store = analyze_store(store, "m")["stored"]["codecs"]
            stats = store.stats("m")["codecs"]
        assert set(predicted["stored"]["codecs"]) == expected, policy
        assert predicted["stored"]["codecs"] == from_store == stats, policy
        assert sum(c["stored_bytes"] for c in stats.values()) == predicted["stored_bytes"]


def test_a_sample_is_flagged_estimated_and_is_the_same_on_every_run(versions):
    a = analyze_local(versions, [K64], sample=0.25, n_workers=2)["reports"][0]
    b = analyze_local(versions, [K64], sample=0.25, n_workers=2)["reports"][0]
    s = a["stored"]
    assert s["estimated"] is True and s["source"] == "estimated from a sample"
    assert 0 < s["sampled_chunks"] < s["unique_chunks"] == a["unique_chunks"]
    assert a["stored_bytes"] == b["stored_bytes"] and s == b["stored"]
    assert a["unique_bytes"] == _unique_64k()  # sampling changes stored bytes only


def _unique_64k() -> int:
    return MIB + len(CFG1) + K64 + K64 + TAIL + len(CFG2)


def test_in_sample_picks_about_the_fraction_by_digest():
    rng = random.Random(3)
    digests = [rng.randbytes(16) for _ in range(4000)]
    picked = [d for d in digests if in_sample(d, 0.25)]
    assert 0.22 < len(picked) / len(digests) < 0.28
    assert all(in_sample(d, 1.0) for d in digests)
    assert picked == [d for d in digests if in_sample(d, 0.25)]


# -- the pure core on hand-made manifests -----------------------------------------------------------


def _manifest(version: str, files: dict[str, list[tuple[bytes, int]]], created: float) -> Manifest:
    entries = tuple(FileEntry(path, sum(n for _, n in chunks), 0o644, tuple(d for d, _ in chunks),
                              tuple(n for _, n in chunks)) for path, chunks in files.items())
    return Manifest(model="m", version=version, kind="dir", chunk_size=100, level=3, files=entries, created=created)


def test_analyze_classifies_runs_and_counts_missing_chunks():
    A, B, C = (bytes([i]) * 16 for i in (1, 2, 3))
    v1 = _manifest("1", {"f": [(A, 100), (B, 100), (A, 100)]}, 1.0)
    v2 = _manifest("2", {"f": [(B, 100), (C, 100), (C, 100), (A, 100)]}, 2.0)
    report = analyze([v1, v2], lambda d, n: None if d == C else n // 2)
    f1, f2 = report["versions"][0]["file_detail"][0], report["versions"][1]["file_detail"][0]
    assert [(r["offset"], r["status"]) for r in f1["regions"]] == [(0, NEW), (200, REPEATED)]
    assert [(r["offset"], r["length"], r["status"]) for r in f2["regions"]] == [
        (0, 100, SHARED), (100, 100, NEW), (200, 100, REPEATED), (300, 100, SHARED)]
    assert f2["regions"][0]["first_seen_in"] == ["1"]
    assert report["missing_chunks"] == 1
    assert report["stored_bytes"] == 100  # A and B at half size; C is missing
    assert report["shared_raw_bytes"]["matrix"] == [[200, 200], [200, 300]]
    assert [v["exclusive_raw_bytes"] for v in report["versions"]] == [0, 100]
    with pytest.raises(ValueError, match="distinct"):
        analyze([v1, v1], lambda d, n: n)


# -- the command ------------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]  # header chunk intact
    width, height = struct.unpack(">II", data[16:24])
    assert b"IEND" in data[-12:]
    return width, height


def test_local_command_prints_a_table_and_draws_a_chart(versions, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(Path(versions[0]).parent)
    chart = tmp_path / "local.png"
    assert tool.main(["local", "v1", "v2", "v3", "--chunk-size", "64KiB", "--chunk-size", "256KiB",
                      "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "measured by encoding every unique chunk as put would (codec auto" in out
    lines = out.splitlines()
    region = next(line for line in lines if line.split()[:2] == ["v2", "a.bin"] and "327680" in line)
    assert region.split()[2:4] == ["327680", "393216"]  # from byte, to byte of v2's new region
    assert any("identical to an earlier file" in line and "b.bin = v1:a.bin" in line for line in lines)
    width, height = _png_size(chart)
    assert width > 600 and height > 300


def test_the_codec_option_is_the_put_policy(versions, capsys):
    assert tool.main(["local", *versions, "--chunk-size", "64KiB", "--codec", "raw", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["reports"]
    assert report["stored"]["codec"] == "raw" and list(report["stored"]["codecs"]) == ["raw"]
    assert report["stored_bytes"] == report["unique_bytes"] + 16 * report["unique_chunks"]  # header per chunk
    assert tool.main(["local", *versions, "--chunk-size", "64KiB"]) == 0
    assert "codecs, auto 64.0 KiB (encoded chunks): raw " in capsys.readouterr().out


def test_json_output_parses_and_has_every_region(versions, capsys):
    assert tool.main(["local", *versions, "--chunk-size", "64KiB", "--json", "--sample", "0.5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "local" and [i["kind"] for i in doc["inputs"]] == ["dir"] * 3
    (report,) = doc["reports"]
    assert report["chunk_size"] == K64 and report["stored"]["estimated"] is True
    v2 = report["versions"][1]
    assert [r["status"] for r in _file(v2, "a.bin")["regions"]] == [SHARED, NEW, SHARED]


def test_store_command_shows_the_matrix_and_its_chart(versions, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    url = str(tmp_path / "store")
    with Store.open(url, cache_dir=False, n_workers=2) as store:
        for path in versions:
            store.put(path, "m", chunk_size=K256)
    chart = tmp_path / "store.png"
    assert tool.main(["store", "--store", url, "m", "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "Shared raw bytes" in out and "Where stored bytes go" in out
    row2 = next(line for line in out.splitlines() if line.startswith("  2 ") and "(" in line)
    assert "(80.0%)" in row2  # v2 shares 1 MiB of its 1.25 MiB with v1
    _png_size(chart)
    assert tool.main(["store", "--store", url, "m", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "store" and doc["shared_raw_bytes"]["matrix"][1][1] == LOGICAL[1]


def test_errors_are_one_line_and_exit_1(tmp_path, capsys):
    assert tool.main(["local", str(tmp_path / "nope"), "--chunk-size", "64KiB"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dedup_stats: ") and "no such file" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:  # a usage error (argparse, exit 2)
        tool.main(["local", str(tmp_path), "--chunk-size", "1KiB"])
    assert exc.value.code == 2 and "argument --chunk-size: chunk_size must be" in capsys.readouterr().err
    assert tool.main(["store", "--store", str(tmp_path / "empty"), "nomodel"]) == 1
    assert "no model named 'nomodel'" in capsys.readouterr().err


def test_runs_as_a_script(versions):
    done = subprocess.run([sys.executable, str(TOOL), "local", *versions, "--chunk-size", "256KiB", "--json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reports"][0]["unique_bytes"] == LOGICAL[0] + K256 + TAIL + len(CFG2)


# -- a real model ---------------------------------------------------------------------------------


@pytest.mark.tensorflow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras on NumPy 2, not ours
def test_a_head_only_fine_tune_adds_a_small_fraction(tmp_path):
    """A Keras model saved as .h5, then again after training only its head: the tool reports that
    the fine-tune adds a small part of its bytes, while retraining everything adds nearly all."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    np = pytest.importorskip("numpy")
    keras.utils.set_random_seed(0)
    inp = keras.Input((32,))
    x = keras.layers.Dense(384, activation="relu")(inp)
    x = keras.layers.Dense(384, activation="relu")(x)
    base = keras.Model(inp, x, name="base")
    top_in = keras.Input((32,))
    model = keras.Model(top_in, keras.layers.Dense(4, activation="softmax", name="head")(base(top_in)))
    rng = np.random.default_rng(1)
    xs, ys = rng.random((64, 32), dtype=np.float32), rng.integers(0, 4, 64)

    def train_and_save(name: str) -> str:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(xs, ys, epochs=1, batch_size=32, verbose=0)
        path = str(tmp_path / name)
        model.save(path)
        return path

    paths = [train_and_save("base.h5")]
    base.trainable = False
    paths.append(train_and_save("head.h5"))
    base.trainable = True
    paths.append(train_and_save("full.h5"))

    result = analyze_local(paths, [K64], n_workers=2)
    base_v, head_v, full_v = result["reports"][0]["versions"]
    assert base_v["new_raw_bytes"] == base_v["logical_bytes"] > 500_000
    assert head_v["new_raw_bytes"] < 0.2 * head_v["logical_bytes"], head_v
    assert head_v["new_raw_bytes"] < 0.1 * base_v["logical_bytes"], head_v
    assert full_v["new_raw_bytes"] > 0.8 * full_v["logical_bytes"], full_v
