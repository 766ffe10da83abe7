"""cas on S3 (moto) against boto3's own ``download_file`` of the same bytes stored as one object.

Targets (from the object-storage issue), for CAS_BENCH_SIZE of float32 weights (1 GiB in the
documented timed run), on the same S3 server:

  1. get with the backend's default threads >= 1.0 x ``download_file`` (s3transfer's
     TransferManager: parallel ranged GETs, 10 threads, 8 MiB parts) of the whole file;
  2. get of v2 (90% of its chunks shared with v1, v1 already fetched, so its chunks are read
     from the local copy) >= 5 x ``download_file`` of v2 whole.

moto serves a ranged GET by building the whole object's answer and slicing it, so each of
``download_file``'s 8 MiB ranged GETs of a large object reads all of it: on moto the default
``download_file`` is pathologically slow (~100 s for 1 GiB) and the ratio above says more about
moto than about boto3. So each round also times ``download_file`` as one stream (a
``multipart_threshold`` above the size: one plain GET, which moto serves in one read), reported
as ``speedup_vs_single_get``, the fairer figure on this server. cas's gets are whole-object GETs
of chunks and never use ranges.

The server is moto in its own process (``python -m cas.testing.s3_server``), so it does not compete
with the client for the GIL; it serves both sides alike. When timed, each cas round is paired with
one ``download_file`` right before it and the target is checked on the median of the per-round
ratios (the machine is shared). Untimed (the normal test run) each body runs once and checks bytes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import uuid

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from cas import Store
from floors import timed
from workload import MODEL, bench_rounds, files_equal, remove

GET_TARGET = 1.0
V2_TARGET = 5.0


class S3ServerProcess:
    """moto's S3 server in a child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cas.testing.s3_server"], stdout=subprocess.PIPE, text=True)
        self.endpoint = self.proc.stdout.readline().split()[1]
        self.proc.stdout.readline()  # the sample store URL

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    from cas.testing.s3_server import ensure_test_credentials

    ensure_test_credentials()
    srv = S3ServerProcess()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    # boto3's defaults, bar the checksum settings cas also uses (moto and many stores choke on them)
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


@pytest.fixture(scope="module")
def bucket(client):
    name = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return name


def _url(server, bucket: str) -> str:
    return f"s3://{bucket}/{uuid.uuid4().hex[:8]}?endpoint={server.endpoint}&region=us-east-1&addressing=path"


def _upload_whole(client, bucket: str, local: str) -> str:
    key = f"plain/{uuid.uuid4().hex[:8]}.f32"
    client.upload_file(local, bucket, key, Config=TransferConfig())
    return key


def _download_whole(client, bucket: str, key: str, local: str) -> None:
    client.download_file(bucket, key, local, Config=TransferConfig())  # boto3's defaults


def _download_single_get(client, bucket: str, key: str, local: str) -> None:
    size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    client.download_file(bucket, key, local, Config=TransferConfig(multipart_threshold=size + 1))


def _per_round_ratio(baselines: list[float], stats) -> float | None:
    rounds = list(getattr(stats, "data", []) or [])
    if not baselines or len(rounds) != len(baselines):
        return None
    return statistics.median(b / s for b, s in zip(baselines, rounds))


def _get_vs_boto3(benchmark, store, client, bucket: str, ref: str, plain: str, dest: str, baseline_dest: str) -> dict:
    """Time ``store.get(ref)`` against boto3's ``download_file`` of ``plain`` (its defaults, and as one
    GET), each baseline run right before its round; returns the figures for ``extra_info``."""
    baselines: list[float] = []
    single: list[float] = []

    def fresh():
        remove(dest)
        if not benchmark.disabled:
            remove(baseline_dest)
            baselines.append(timed(_download_whole, client, bucket, plain, baseline_dest))
            remove(baseline_dest)
            single.append(timed(_download_single_get, client, bucket, plain, baseline_dest))
        return (), {}

    benchmark.pedantic(lambda: store.get(ref, dest), setup=fresh, rounds=bench_rounds(), iterations=1)
    remove(baseline_dest)
    stats = benchmark.stats.stats if benchmark.stats else None
    return {"download_file_s": baselines, "speedup_vs_download_file": _per_round_ratio(baselines, stats),
            "single_get_s": single, "speedup_vs_single_get": _per_round_ratio(single, stats)}


@pytest.mark.benchmark(group="s3-get")
def test_get_default_threads_vs_boto3_download_file(benchmark, server, client, bucket, weights, bench_tmp, size):
    store = Store.open(_url(server, bucket), cache_dir=False)
    store.put(weights, MODEL)
    plain = _upload_whole(client, bucket, weights)
    dest = os.path.join(bench_tmp, "s3-got.f32")
    figures = _get_vs_boto3(benchmark, store, client, bucket, f"{MODEL}@1", plain, dest,
                            os.path.join(bench_tmp, "boto3-got.f32"))
    assert files_equal(dest, weights)
    benchmark.extra_info.update(figures, size=size, n_workers=store.n_workers)
    store.close()
    remove(dest)
    ratio = figures["speedup_vs_download_file"]
    if ratio is not None:
        assert ratio >= GET_TARGET, f"get is {ratio:.2f}x boto3's download_file; target {GET_TARGET}x"


@pytest.mark.benchmark(group="s3-get-v2")
def test_get_v2_after_v1_vs_boto3_download_file_of_v2(benchmark, server, client, bucket, weights, weights_v2,
                                                      bench_tmp, size):
    v2_path, changed = weights_v2
    store = Store.open(_url(server, bucket), cache_dir=os.path.join(bench_tmp, "s3-cache"))
    store.put(weights, MODEL)
    store.put(v2_path, MODEL)
    store.get(f"{MODEL}@1", os.path.join(bench_tmp, "s3-v1.f32"))  # v1 fetched: its chunks are local
    plain = _upload_whole(client, bucket, v2_path)
    dest = os.path.join(bench_tmp, "s3-v2.f32")
    figures = _get_vs_boto3(benchmark, store, client, bucket, f"{MODEL}@2", plain, dest,
                            os.path.join(bench_tmp, "boto3-v2.f32"))
    assert files_equal(dest, v2_path)
    t = store.last_transfer
    assert t.fetched_bytes <= len(changed) * store.manifest(f"{MODEL}@2").chunk_size
    benchmark.extra_info.update(figures, size=size, fetched_bytes=t.fetched_bytes, reused_bytes=t.reused_bytes)
    store.close()
    remove(dest)
    remove(os.path.join(bench_tmp, "s3-v1.f32"))
    ratio = figures["speedup_vs_download_file"]
    if ratio is not None:
        assert ratio >= V2_TARGET, f"get of v2 is {ratio:.2f}x boto3's download_file of v2; target {V2_TARGET}x"
