"""The cas demo: version a real Keras model, fine-tune its head, and see what the store keeps.

    python examples/demo.py            # uses the default store ($CAS_STORE or ~/.local/share/cas/store)

1. Build ResNet50 (keras.applications, random weights: nothing is downloaded) at 64x64 input with a
   10-class head, about 95 MB of weights, and save it as v1 of ``demo-resnet50``.
2. Freeze the base, fine-tune only the head for two epochs on synthetic data, save v2.
3. Show the dedup: the bytes v2 holds that v1 does not, next to the share of bytes that really
   changed (head and optimizer state).
4. Load v1 then v2 back from the store (v2 fetches only what v1 lacks) and check that v2's
   weights and predictions are identical to the in-memory model's.
5. Predict with 2 worker processes and check the result equals the single-process one.

Re-runnable: every run adds two versions and compares only the two it just stored. Exits 1 if a
check fails. Takes about a minute on 2 cores.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras notes that v1's never-built optimizer has fewer variables than the one it builds on load.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")

import numpy as np  # noqa: E402

from cas import Store  # noqa: E402
from cas.predict import parallel_predict, predict_local  # noqa: E402
from cas.sizes import human_bytes  # noqa: E402
from cas.tensorflow import import_tensorflow, load_model, save_model  # noqa: E402

MODEL = "demo-resnet50"
INPUT_SHAPE = (64, 64, 3)
N_CLASSES = 10
MAX_V2_SHARE = 0.10  # v2 may add at most this share of v1's bytes


def build():
    import_tensorflow()  # without TensorFlow's C++ start-up notices (the worker processes do the same)
    import keras

    base = keras.applications.ResNet50(input_shape=INPUT_SHAPE, include_top=False, weights=None, pooling="avg")
    inputs = keras.Input(INPUT_SHAPE)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", name="head")(base(inputs))
    model = keras.Model(inputs, outputs, name="classifier")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model, base


def new_bytes(v2, v1) -> int:
    """Raw bytes of the distinct chunks of v2 that v1 does not have."""
    old = v1.chunk_lengths()
    return sum(n for d, n in v2.chunk_lengths().items() if d not in old)


def main() -> int:
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            failures.append(what)

    t0 = time.perf_counter()
    store = Store.open()
    print(f"store: {store.backend.url}")
    rng = np.random.default_rng(0)
    x_train = rng.random((128, *INPUT_SHAPE), dtype=np.float32)
    y_train = rng.integers(0, N_CLASSES, 128)
    x_test = rng.random((64, *INPUT_SHAPE), dtype=np.float32)

    print("\n1. ResNet50 base + 10-class head, random weights")
    model, base = build()
    before = [w.numpy().copy() for w in model.weights]
    v1 = save_model(model, MODEL, store=store, metadata={"step": "base"})
    t = store.last_transfer
    print(f"  saved {MODEL}@{v1.version}: {human_bytes(v1.size)} .keras in {t.chunks} chunks of "
          f"{human_bytes(v1.chunk_size)}; sent {human_bytes(t.sent_raw_bytes)} "
          f"({human_bytes(t.sent_stored_bytes)} after zstd)")

    print("\n2. freeze the base, fine-tune only the head (2 epochs)")
    base.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    after = [w.numpy() for w in model.weights]
    changed = sum(a.nbytes for a, b in zip(before, after) if not np.array_equal(a, b))
    optimizer_state = sum(v.numpy().nbytes for v in model.optimizer.variables)
    v2 = save_model(model, MODEL, store=store, metadata={"step": "head fine-tune"})
    t = store.last_transfer
    print(f"  saved {MODEL}@{v2.version}: {human_bytes(v2.size)}; sent {human_bytes(t.sent_raw_bytes)} this run")

    print(f"\n3. dedup of {MODEL}@{v2.version} against @{v1.version}")
    added = new_bytes(v2, v1)
    ideal = changed + optimizer_state
    print(f"  tensors changed: {human_bytes(changed)} of {human_bytes(sum(a.nbytes for a in after))} "
          f"(+ {human_bytes(optimizer_state)} new optimizer state)")
    print(f"  v2 adds {human_bytes(added)} = {added / v1.size:.1%} of v1's {human_bytes(v1.size)} "
          f"(ideal {ideal / v1.size:.2%}: only the changed bytes)")
    check(added <= MAX_V2_SHARE * v1.size, f"v2 adds at most {MAX_V2_SHARE:.0%} of v1's bytes")
    for v in store.stats(MODEL)["models"][0]["versions"][-2:]:
        print(f"  cas stats: {MODEL}@{v['version']}  {human_bytes(v['logical_bytes'])}  "
              f"adds {human_bytes(v['new_stored_bytes'])} stored")

    print("\n4. load back from the store")
    load_model(f"{MODEL}@{v1.version}", store=store)
    t = store.last_transfer
    print(f"  @{v1.version}: fetched {human_bytes(t.fetched_bytes)}, reused {human_bytes(t.reused_bytes)} from local copies")
    loaded = load_model(f"{MODEL}@{v2.version}", store=store)
    t = store.last_transfer
    print(f"  @{v2.version}: fetched {human_bytes(t.fetched_bytes)}, reused {human_bytes(t.reused_bytes)} from @{v1.version}")
    check(t.fetched_bytes <= added, "loading v2 after v1 fetches only what v2 does not share with v1")
    load_model(f"{MODEL}@{v2.version}", store=store)
    check(store.last_transfer.fetched_bytes == 0, "loading v2 again moves no bytes")
    same_weights = all(np.array_equal(a, w.numpy()) for a, w in zip(after, loaded.weights))
    check(same_weights and len(after) == len(loaded.weights), "v2's weights are bit-identical to the model's")
    expected = predict_local(model, x_test, batch_size=32)
    got = predict_local(loaded, x_test, batch_size=32)
    check(np.array_equal(got, expected), f"v2's predictions on {len(x_test)} inputs equal the original's")

    print("\n5. parallel inference: 2 worker processes load the local copy once each")
    t1 = time.perf_counter()
    parallel = parallel_predict(f"{MODEL}@{v2.version}", x_test, processes=2, store=store, batch_size=32)
    print(f"  {len(parallel)} predictions in {time.perf_counter() - t1:.1f} s, most of it starting two Python "
          f"processes with TensorFlow (max |diff| vs one process: {np.abs(parallel - expected).max():.1e})")
    check(np.allclose(parallel, expected, rtol=1e-6, atol=1e-7), "parallel predictions equal single-process ones")

    store.close()
    print(f"\n{'all checks passed' if not failures else f'{len(failures)} check(s) FAILED'} "
          f"in {time.perf_counter() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":  # the guard matters: worker processes are spawned and re-import this file
    sys.exit(main())
