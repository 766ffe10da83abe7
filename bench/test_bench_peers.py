"""The side-by-side benchmark's parts, untimed and small, so they never rot (bench/datasets.py, bench/peers.py).

* the generator on a tiny model: four versions in every format, each loads, and the
  versions differ where the stage says (a head fine-tune leaves the base's weights alone);
* the synthetic series: 10% of the chunks changed in place, then 1 MiB inserted at the start;
* the runner's measurement of cas (local and WebHDFS) and HdfsCLI on a small series: times, peak
  RSS, bytes stored, every restore identical to its source. restic, borg and casync are measured the
  same way when installed (they are not in CI: ``bash bench/setup-peers.sh``) and skipped otherwise.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import datasets
import peers
from workload import CHUNK_SIZE, MIB

SYNTHETIC_SIZE = 8 * MIB  # two 4 MiB chunks: v2 changes one


@pytest.fixture(scope="module")
def tiny_series(bench_tmp):
    pytest.importorskip("tensorflow")
    out = os.path.join(bench_tmp, "peers-ds")
    return datasets.generate(out, arch="tiny", input_size=32, unfreeze=3, steps=1, batch=4, log=lambda *_: None)


@pytest.fixture(scope="module")
def synthetic_series(bench_tmp):
    out = os.path.join(bench_tmp, "peers-synthetic")
    return datasets.synthetic_series(out, SYNTHETIC_SIZE)


@pytest.mark.tensorflow
def test_generator_makes_the_series_and_every_file_loads(tiny_series):
    import keras
    import tensorflow as tf

    series = {s["name"]: s for s in tiny_series["series"]}
    assert sorted(series) == ["h5-own", "keras-own", "savedmodel"]
    for s in series.values():
        assert [v["version"] for v in s["versions"]] == [1, 2, 3, 4]
        assert all(os.path.exists(v["path"]) and v["bytes"] > 0 for v in s["versions"])
    # Keras puts its config first: a config change shifts the weights behind it
    with zipfile.ZipFile(series["keras-own"]["versions"][0]["path"]) as own:
        assert own.namelist()[-1] == "model.weights.h5"
    loaded = {}
    for name in ("keras-own", "h5-own"):
        loaded[name] = [keras.saving.load_model(v["path"], compile=False) for v in series[name]["versions"]]
    saved = tf.saved_model.load(series["savedmodel"]["versions"][-1]["path"])
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(saved.serve(x).numpy(), loaded["keras-own"][-1](x).numpy(), rtol=1e-4, atol=1e-5)
    for name, models in loaded.items():
        v1, v2, v3, v4 = ([w.numpy() for w in m.get_layer("tiny").weights] for m in models)
        heads = [m.get_layer("head").get_weights()[0] for m in models]
        assert all(np.array_equal(a, b) for a, b in zip(v1, v2)), f"{name}: v2 (head fine-tune) changed the base"
        assert not np.array_equal(heads[0], heads[1]), f"{name}: v2 did not train the head"
        assert np.array_equal(v2[0], v3[0]), f"{name}: v3 trained the first layer"
        assert not np.array_equal(v2[-1], v3[-1]), f"{name}: v3 did not train the last layers"
        assert not np.array_equal(v3[0], v4[0]), f"{name}: v4 (full fine-tune) left the first layer alone"
    # both formats hold the same weights
    for a, b in zip(loaded["keras-own"][-1].weights, loaded["h5-own"][-1].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_synthetic_series_changes_in_place_then_shifts(synthetic_series):
    v1, v2, v3 = (open(v["path"], "rb").read() for v in synthetic_series["versions"])
    assert len(v1) == len(v2) == SYNTHETIC_SIZE and len(v3) == SYNTHETIC_SIZE + datasets.INSERT_BYTES
    same = [v1[o:o + CHUNK_SIZE] == v2[o:o + CHUNK_SIZE] for o in range(0, SYNTHETIC_SIZE, CHUNK_SIZE)]
    assert same == [False, True]
    assert v3[datasets.INSERT_BYTES:] == v2
    again = datasets.synthetic(os.path.join(os.path.dirname(synthetic_series["versions"][0]["path"]), "again"),
                               SYNTHETIC_SIZE, 0)
    assert open(again, "rb").read() == v1


def test_run_measured_reports_time_and_peak_rss(bench_tmp):
    r = peers.run_measured(["python3", "-c", "b = bytearray(64 << 20); print(len(b))"])
    assert r.stdout.strip() == str(64 << 20) and r.seconds > 0
    assert r.peak_rss >= 64 << 20
    with pytest.raises(RuntimeError, match="failed"):
        peers.run_measured(["python3", "-c", "raise SystemExit(3)"])


@pytest.fixture(scope="module")
def server(bench_tmp):
    with peers.Server(os.path.join(bench_tmp, "peers-hdfs")) as srv:
        yield srv


@pytest.mark.parametrize("tool", ["cas-local", "cas-local-cdc", "cas-webhdfs", "hdfscli", "restic", "borg", "casync"])
def test_runner_measures_each_tool(tool, server, synthetic_series, bench_tmp):
    cls = peers.TOOLS[tool]
    if not cls.available():
        pytest.skip(f"{tool} is not installed ({peers.INSTALL_HINT})")
    t = cls(os.path.join(bench_tmp, f"peers-{tool}"), server=server, chunk_size=CHUNK_SIZE)
    try:
        rows = peers.measure_series(t, synthetic_series, log=lambda *_: None)
    finally:
        t.cleanup()
    stores = [r for r in rows if r["op"] == "store"]
    restores = [r for r in rows if r["op"] == "restore"]
    assert [r["version"] for r in stores] == [r["version"] for r in restores] == [1, 2, 3]
    assert all(r["seconds"] > 0 and r["peak_rss"] > 0 for r in rows)
    assert all(r["verified"] for r in restores)
    stored = [r["stored_bytes"] for r in stores]
    assert stored[0] > 0.5 * SYNTHETIC_SIZE and stored == sorted(stored)
    if tool in ("cas-local", "cas-webhdfs"):
        # v2 adds the one changed 4 MiB chunk (zstd keeps ~92.5% of these floats), not the whole file
        assert stored[1] - stored[0] < 0.6 * SYNTHETIC_SIZE
    if tool == "cas-local-cdc":
        # v3 (1 MiB inserted at the start) adds about the insertion: content-defined cuts resynchronise
        assert stored[2] - stored[1] < 0.4 * SYNTHETIC_SIZE
    if tool == "hdfscli":
        assert stored == [SYNTHETIC_SIZE, 2 * SYNTHETIC_SIZE, 3 * SYNTHETIC_SIZE + datasets.INSERT_BYTES]
    assert not os.path.exists(t.work)


def test_report_tables():
    rows = []
    for repeat in range(3):
        for tool, seconds, stored in (("cas-local", 1.0, 100), ("borg", 2.0, 80), ("hdfscli", 3.0, 300)):
            for k in (1, 2):
                rows.append({"series": "s", "tool": tool, "op": "store", "version": k, "repeat": repeat,
                             "seconds": seconds * (1 + repeat), "peak_rss": 50 << 20,
                             "stored_bytes": stored * k * 10**6, "source_bytes": 150 * 10**6})
                rows.append({"series": "s", "tool": tool, "op": "restore", "version": k, "repeat": repeat,
                             "seconds": seconds / 2, "peak_rss": 40 << 20, "verified": True})
    summary = peers.summarize(rows)
    assert summary["s"]["cas-local"]["store"] == [2.0, 2.0]  # the median of 1, 2, 3
    assert summary["s"]["borg"]["stored"] == [80e6, 160e6]
    table = peers.series_table("s", summary["s"])
    assert "| borg | 4.00 / 4.00 | 1.00 / 1.00 | 80.0 / 160.0 | 53.3 | 50 / 40 |" in table
    comparison = peers.comparison_table(summary)
    assert ("| s | borg (cas-local) | 8.00 / 4.00 = **2.00x** | 2.00 / 1.00 = **2.00x** "
            "| 200.0 / 160.0 MB = **1.25** |") in comparison
    assert "hdfscli" not in comparison  # cas-webhdfs was not measured
