"""cas.tensorflow.load_model against Keras loading the same local file.

Targets (from the issue), for a ~100 MB model (ResNet50 without its top, 64x64 input, + a head):

  warm: load_model of a version already fetched  <= 1.1 x keras.saving.load_model(local file)
  cold: load_model with an empty cache, fetching every chunk from the local store
                                                 <= 1.5 x keras.saving.load_model(local file)

The local file is the very ``.keras`` file the store holds (a copy outside the cache), so both
sides parse the same bytes. In the normal test run (``--benchmark-disable``) each body runs once,
untimed, on a small MobileNetV2 (~9 MB) to stay fast, and still checks that the loaded weights
equal the saved ones; ``--benchmark-enable`` uses the ~100 MB model and ``test_ratios`` checks
the targets.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import time

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from cas import Store  # noqa: E402
from cas.tensorflow import checkout_model, load_model, save_model  # noqa: E402

from workload import bench_rounds  # noqa: E402

pytestmark = pytest.mark.tensorflow

WARM_TARGET = 1.1
COLD_TARGET = 1.5
MODEL = "bench-tf"
_fastest: dict[str, float] = {}  # fastest round of each: Keras load times on a shared machine have
# outliers of several seconds (GC, page cache, the other core), the fastest round is its real cost


def _timed(config) -> bool:
    return bool(config.getoption("benchmark_enable", False)) or not config.getoption("benchmark_disable", False)


def _rounds() -> int:
    return max(bench_rounds(), 5)  # Keras load times are noisy: a few more rounds than the core benches


def _build(large: bool):
    keras.utils.set_random_seed(0)
    if large:
        base = keras.applications.ResNet50(input_shape=(64, 64, 3), include_top=False, weights=None, pooling="avg")
    else:
        base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None, pooling="avg")
    inp = keras.Input(base.input_shape[1:])
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="head")(base(inp)))


@pytest.fixture(scope="module")
def saved(request, bench_tmp):
    """(store root, local .keras copy, model weights) for one model saved as MODEL@1."""
    model = _build(large=_timed(request.config))
    root = os.path.join(bench_tmp, "tf-store")
    with Store.open(root, cache_dir=os.path.join(bench_tmp, "tf-cache-writer")) as store:
        save_model(model, MODEL, store=store)
        local = checkout_model(MODEL, store=store)
        copy = os.path.join(bench_tmp, "tf-local.keras")
        shutil.copyfile(local.path, copy)
    weights = [w.numpy() for w in model.weights]
    yield root, copy, weights
    shutil.rmtree(root, ignore_errors=True)


def _fresh_session():
    """Outside the timed part of every round: drop the models earlier rounds built, so each round
    starts from the same state (without this, Keras load times drift by seconds)."""
    keras.backend.clear_session()
    gc.collect()
    return (), {}


def _check(model, weights) -> None:
    got = [w.numpy() for w in model.weights]
    assert len(got) == len(weights) and all(np.array_equal(a, b) for a, b in zip(got, weights))


_paired: dict[str, float] = {}  # median over rounds of (cas round / Keras load timed just before it)


def _with_keras_pair(benchmark, copy: str, pairs: list, then=None):
    """A pedantic setup that, when timed, first times one plain Keras load of the local copy, so each
    round of the subject has its own baseline taken seconds earlier (Keras load times drift)."""

    def setup():
        if not benchmark.disabled:
            _fresh_session()
            t0 = time.perf_counter()
            keras.saving.load_model(copy)
            pairs.append(time.perf_counter() - t0)
        if then:
            then()
        return _fresh_session()

    return setup


def _record(benchmark, name: str, size: int, pairs: list | None = None) -> None:
    benchmark.extra_info["model_bytes"] = size
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        _fastest[name] = stats.stats.min
        rounds = list(stats.stats.data)
        if pairs and len(pairs) >= len(rounds):
            pairs = pairs[len(pairs) - len(rounds):]  # the warm-up round's pair is not a timed round
            _paired[name] = statistics.median(r / k for r, k in zip(rounds, pairs))
            benchmark.extra_info["paired_ratio_to_keras"] = round(_paired[name], 3)


@pytest.mark.benchmark(group="tf-load")
def test_keras_load_local_file(benchmark, saved):
    """Baseline: keras.saving.load_model of the same .keras file on local disk."""
    _, copy, weights = saved
    model = benchmark.pedantic(lambda: keras.saving.load_model(copy), setup=_fresh_session, rounds=_rounds(),
                               iterations=1, warmup_rounds=1)
    _check(model, weights)
    _record(benchmark, "keras", os.path.getsize(copy))


@pytest.mark.benchmark(group="tf-load")
def test_load_model_warm(benchmark, saved, bench_tmp):
    """load_model of a version already in the cache: no bytes move, then Keras loads the checkout."""
    root, copy, weights = saved
    store = Store.open(root, cache_dir=os.path.join(bench_tmp, "tf-cache-warm"))
    load_model(MODEL, store=store)  # fetch once
    pairs: list[float] = []
    model = benchmark.pedantic(lambda: load_model(MODEL, store=store), setup=_with_keras_pair(benchmark, copy, pairs),
                               rounds=_rounds(), iterations=1, warmup_rounds=1)
    assert store.last_transfer.fetched_bytes == 0 and store.last_transfer.reused_bytes == 0
    _check(model, weights)
    _record(benchmark, "warm", os.path.getsize(copy), pairs)


@pytest.mark.benchmark(group="tf-load")
def test_load_model_cold(benchmark, saved, bench_tmp):
    """load_model with an empty cache: every chunk read from the local store, verified, written, then loaded."""
    root, copy, weights = saved
    rounds = iter(range(1000))
    state = {}
    pairs: list[float] = []

    def fresh_cache():
        state["store"] = Store.open(root, cache_dir=os.path.join(bench_tmp, f"tf-cache-cold-{next(rounds)}"))

    model = benchmark.pedantic(lambda: load_model(MODEL, store=state["store"]),
                               setup=_with_keras_pair(benchmark, copy, pairs, then=fresh_cache),
                               rounds=_rounds(), iterations=1, warmup_rounds=1)
    assert state["store"].last_transfer.fetched_bytes == os.path.getsize(copy)
    _check(model, weights)
    _record(benchmark, "cold", os.path.getsize(copy), pairs)


def test_ratios(request):
    """The targets, as medians of per-round ratios to a Keras load timed right before each round
    (timed runs only). The ratio of the fastest rounds is printed too."""
    if not _timed(request.config) or not {"warm", "cold"} <= set(_paired):
        pytest.skip("timing is disabled (run with --benchmark-enable)")
    warm, cold = _paired["warm"], _paired["cold"]
    fastest = ""
    if {"keras", "warm", "cold"} <= set(_fastest):
        fastest = (f"; fastest rounds: keras {_fastest['keras']:.3f}s, warm {_fastest['warm']:.3f}s, "
                   f"cold {_fastest['cold']:.3f}s")
    print(f"\npaired medians: warm {warm:.2f}x (target {WARM_TARGET}x), cold {cold:.2f}x (target {COLD_TARGET}x)"
          + fastest)
    assert warm <= WARM_TARGET and cold <= COLD_TARGET
