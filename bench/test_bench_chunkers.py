"""Chunkers side by side: put speed of each, and what each stores for edits that keep or shift offsets.

Targets (issue 11):

  - put with ``cdc`` >= 0.9 x put with ``fixed`` on the same weights (rounds alternate the order);
  - objects per 100 MB stored with the default chunker on model files at most 130.

The put comparison is one test that alternates fixed, auto and cdc round by round in fresh stores,
so all three see the same machine load; ``extra_info`` keeps every round's time and the ratios of
the medians. In the normal test run (``--benchmark-disable``) it runs one untimed round and still
checks what does not depend on timing: each chunker's version reads back byte for byte, and on a
1 MiB insertion cdc stores a small fraction of what fixed stores again.
"""

from __future__ import annotations

import os
import statistics

import pytest

from floors import timed
from workload import MIB, MODEL, bench_rounds, files_equal, open_store, remove

from cas.chunking import CHUNKERS
from cas.dedup import analyze_local, objects_per_100mb

INSERT = 1 * MIB


@pytest.mark.benchmark(group="chunkers")
def test_put_per_chunker(benchmark, weights, bench_tmp, size):
    """Store.put of new weights into an empty local store with each chunker, rounds alternating."""
    times = {name: [] for name in CHUNKERS}
    rounds = 1 if benchmark.disabled else bench_rounds()
    for r in range(rounds):
        order = list(CHUNKERS) if r % 2 == 0 else list(reversed(CHUNKERS))
        for name in order:
            root = os.path.join(bench_tmp, f"put-{name}")
            remove(root)
            store = open_store(root)
            times[name].append(timed(lambda: store.put(weights, MODEL, chunker=name)))
            out = os.path.join(bench_tmp, f"get-{name}")
            remove(out)
            store.get(f"{MODEL}@1", out)
            assert files_equal(weights, out)
            remove(out)
            remove(root)
    medians = {name: statistics.median(t) for name, t in times.items()}
    benchmark.extra_info.update(raw_bytes=size, rounds_s=times, median_s=medians,
                                cdc_vs_fixed=medians["fixed"] / medians["cdc"],
                                auto_vs_fixed=medians["fixed"] / medians["auto"])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the figures are in extra_info


def test_cdc_stores_an_insertion_once(weights, bench_tmp, size):
    """1 MiB inserted at the start of the weights: fixed (and auto, for a raw file) stores it all again,
    cdc about the insertion. Predicted with the dedup tool, which cuts as put does."""
    shifted = os.path.join(bench_tmp, "weights-shifted.f32")
    with open(weights, "rb") as src, open(shifted, "wb") as dst:
        dst.write(os.urandom(INSERT))
        while block := src.read(16 * MIB):
            dst.write(block)
    result = analyze_local([weights, shifted], [4 * MIB, 1 * MIB], chunkers=["fixed", "cdc"], sample=0.05)
    added = {(r["chunker"], r["chunk_size"]): r["versions"][1]["new_raw_bytes"] for r in result["reports"]}
    assert added[("fixed", 4 * MIB)] >= size
    assert added[("cdc", 1 * MIB)] <= INSERT + 8 * MIB
    for r in result["reports"]:
        assert r["objects_per_100mb"] == objects_per_100mb(r["objects"], r["stored_bytes"])
        assert r["objects"] <= r["unique_chunks"]  # small pieces share packs
    remove(shifted)
