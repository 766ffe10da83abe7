"""Fixtures for the cas benchmarks; the helpers they use live in workload.py (sizes from the
environment, generated data, stores) and floors.py (the machine's limits: compress/decode-only
baselines, I/O-only floors, CPU and peak-RSS measurement)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from cas import codec

from workload import (LEVEL, MIN_SAVING, MODEL, bench_size, open_store, read_chunks, remove, write_changed_copy,
                      write_weights)

# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def bench_tmp():
    path = tempfile.mkdtemp(prefix="cas-bench-", dir=os.environ.get("CAS_BENCH_TMP"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def weights_path(bench_tmp):
    """weights_path(size, seed=0) -> path of a generated weights file (made once, cached)."""
    data_dir = os.environ.get("CAS_BENCH_DATA_DIR") or os.path.join(bench_tmp, "data")
    os.makedirs(data_dir, exist_ok=True)

    def get(size: int, seed: int = 0) -> str:
        path = os.path.join(data_dir, f"weights-{size}-s{seed}.f32")
        return path if os.path.exists(path) else write_weights(path, size, seed=seed)

    return get


@pytest.fixture(scope="session")
def size() -> int:
    return bench_size()


@pytest.fixture(scope="session")
def weights(weights_path, size) -> str:
    return weights_path(size)


@pytest.fixture(scope="session")
def weights_v2(weights, bench_tmp) -> tuple[str, list[int]]:
    """(path, changed chunk indices): the weights with 10% of their chunks fine-tuned."""
    path = os.path.join(bench_tmp, "weights-v2.f32")
    return path, write_changed_copy(weights, path)


@pytest.fixture(scope="session")
def chunks(weights) -> list[bytes]:
    return read_chunks(weights)


@pytest.fixture(scope="session")
def encoded(chunks) -> list[tuple[bytes, int]]:
    """(stored object, raw length) of every chunk, exactly as put stores them."""
    out = bytearray(codec.encoded_capacity(max(map(len, chunks), default=0)))
    return [(bytes(out[:codec.encode_into(c, out, level=LEVEL, min_saving=MIN_SAVING)]), len(c)) for c in chunks]


@pytest.fixture(scope="session")
def n_workers(bench_tmp) -> int:
    """The thread count a Store on the local backend uses by default; the baselines use the same."""
    return open_store(os.path.join(bench_tmp, "probe")).n_workers


@pytest.fixture(scope="module")
def stored(weights, bench_tmp) -> str:
    """Root of a local store that holds the weights as MODEL@1."""
    root = os.path.join(bench_tmp, "stored")
    open_store(root).put(weights, MODEL)
    yield root
    remove(root)
