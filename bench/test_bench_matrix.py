"""put/get throughput across thread counts, chunk sizes and zstd levels, on the local and WebHDFS backends.

Three sweeps around the defaults (4 MiB chunks, zstd level 3, the backend's thread count), each
varying one knob, so the table answers "what does this knob buy here?":

    threads: 1, 2, 4, 8        chunk size: 1, 4, 16 MiB        zstd level: 1, 3, 9

Timed run (results table from pytest-benchmark, MB/s in the ``extra_info`` column):

    CAS_BENCH_SIZE=256MiB .venv/bin/python -m pytest bench/test_bench_matrix.py --benchmark-enable \\
        --benchmark-group-by=param:backend,param:op --benchmark-columns=median,min,rounds \\
        --benchmark-sort=name

The WebHDFS server runs in its own process with no network emulation (so the table shows
client-side costs; bench/test_bench_webhdfs.py covers the emulated network). Untimed (the normal
test run) every configuration runs once on 8 MiB and checks the round trip.
"""

from __future__ import annotations

import os
import uuid

import pytest

from cas import Store
from cas.backends import LocalBackend
from workload import MIB, bench_rounds, files_equal, remove, write_weights
from test_bench_webhdfs import ServerProcess

CONFIGS = (
    [dict(threads=n, chunk_mib=4, level=3) for n in (1, 2, 4, 8)]
    + [dict(threads=None, chunk_mib=c, level=3) for c in (1, 16)]
    + [dict(threads=None, chunk_mib=4, level=lv) for lv in (1, 9)]
)


def _id(cfg: dict) -> str:
    return f"threads{cfg['threads'] or 'default'}-chunk{cfg['chunk_mib']}MiB-level{cfg['level']}"


@pytest.fixture(scope="module")
def matrix_data(bench_tmp, size, benchmark_timing_enabled):
    n = size if benchmark_timing_enabled else 8 * MIB
    return write_weights(os.path.join(bench_tmp, f"matrix-{n}.f32"), n), n


@pytest.fixture(scope="module")
def benchmark_timing_enabled(request) -> bool:
    # --benchmark-enable on the command line wins over the --benchmark-disable in pyproject's addopts
    config = request.config
    return bool(config.getoption("benchmark_enable", False)) or not config.getoption("benchmark_disable", False)


@pytest.fixture(scope="module")
def hdfs_server(bench_tmp):
    data_dir = os.path.join(bench_tmp, "matrix-hdfs")
    os.makedirs(data_dir, exist_ok=True)
    srv = ServerProcess(data_dir, bandwidth=None, latency=0.0)
    yield srv
    srv.stop()


def _open(backend: str, cfg: dict, bench_tmp: str, hdfs_server) -> Store:
    if backend == "local":
        b = LocalBackend(os.path.join(bench_tmp, f"matrix-store-{uuid.uuid4().hex[:8]}"))
        return Store(b, cache_dir=False, n_workers=cfg["threads"])
    return Store.open(hdfs_server.store_url(), cache_dir=False, n_workers=cfg["threads"],
                      max_workers=cfg["threads"] or 8)


@pytest.mark.parametrize("backend", ["local", "webhdfs"])
@pytest.mark.parametrize("op", ["put", "get"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_matrix(benchmark, backend, op, cfg, matrix_data, bench_tmp, request):
    data, n = matrix_data
    hdfs = request.getfixturevalue("hdfs_server") if backend == "webhdfs" else None
    chunk = cfg["chunk_mib"] * MIB
    dest = os.path.join(bench_tmp, f"matrix-out-{uuid.uuid4().hex[:8]}")
    state = {}

    def setup():
        store = _open(backend, cfg, bench_tmp, hdfs)
        if op == "get":
            store.put(data, "m", chunk_size=chunk, level=cfg["level"])
            remove(dest)
        state["store"] = store
        return (store,), {}

    def run(store):
        if op == "put":
            store.put(data, "m", chunk_size=chunk, level=cfg["level"])
        else:
            store.get("m@1", dest)

    benchmark.pedantic(run, setup=setup, rounds=bench_rounds(), iterations=1)
    store = state["store"]
    if op == "get":
        assert files_equal(dest, data)
        remove(dest)
    else:
        assert store.last_transfer.sent_raw_bytes == n
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None and getattr(stats, "median", 0):
        benchmark.extra_info["MB_per_s"] = round(n / stats.median / 1e6, 1)
    benchmark.extra_info.update(threads=store.n_workers, chunk_mib=cfg["chunk_mib"], level=cfg["level"])
    if backend == "local":
        remove(store.backend.root)
