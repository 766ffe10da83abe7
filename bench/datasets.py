"""Data sets for the side-by-side benchmark (bench/peers.py): a model version series and synthetic tensors.

A model series is what a team keeps of one model: a ``keras.applications`` architecture with random
weights (nothing is downloaded), plus a small classification head, trained a couple of steps on
random data at each stage so every stage really changes the weights it trains:

  v1  base            everything trainable (the "pre-trained" model)
  v2  head fine-tune  base frozen (``trainable=False``), only the head trains
  v3  last blocks     the last ``unfreeze`` layers of the base train too (BatchNorm statistics included)
  v4  full fine-tune  everything trains

Each version is recompiled (a new optimizer), as users do after changing ``trainable``. Every
version is saved in each requested format by Keras' own saver (``model.save``; ``model.export``
for a SavedModel), which is also what ``cas.tensorflow.save_model`` stores. Its ``.keras`` and
``.h5`` files put the config before the weights, so a config change (the ``trainable`` flags)
shifts every weight byte: edits that move offsets. (Until issue 11 save_model wrote a weights-first
layout, the ``keras-cas``/``h5-cas`` series of older runs in bench/README.md.)

Layout of OUT_DIR::

    series.json                          what was generated (read by bench/peers.py)
    keras-own/v1/model.keras ... v4      h5-own/vK/model.h5    savedmodel/vK/saved_model/
    synthetic/vK/weights.f32             (with --synthetic SIZE)

The synthetic series (``synthetic_series``) is float32 N(0, 0.02) weights (``workload.write_weights``):
v1 the base, v2 with 10% of its 4 MiB chunks changed in place (offsets kept), v3 = v2 with 1 MiB of new
weights inserted at the start (every byte behind it shifts by 1 MiB).

    .venv/bin/python bench/datasets.py /tmp/ds --arch ResNet50 --input 64 --formats keras,h5,savedmodel
    .venv/bin/python bench/datasets.py /tmp/ds --arch MobileNetV2 --input 32 --synthetic 64MiB   # fast
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import CHUNK_SIZE, MIB, format_size, parse_size, write_changed_copy, write_weights  # noqa: E402

FORMATS = ("keras", "h5", "savedmodel")
STAGES = ("base", "head fine-tune", "last blocks fine-tune", "full fine-tune")
FILE_NAMES = {"keras": "model.keras", "h5": "model.h5", "savedmodel": "saved_model"}
INSERT_BYTES = 1 * MIB
MODEL_CHUNK_SIZE = CHUNK_SIZE  # what cas.tensorflow.save_model and a plain put use (the default)


def series_name(fmt: str) -> str:
    return "savedmodel" if fmt == "savedmodel" else f"{fmt}-own"


# -- synthetic tensors ----------------------------------------------------------------------------


def synthetic(path: str, size: int, seed: int = 0) -> str:
    """``size`` bytes of float32 N(0, 0.02) weights at ``path`` (identical for equal size and seed)."""
    return write_weights(path, size, seed=seed)


def insert_at_start(src: str, dst: str, n_bytes: int = INSERT_BYTES, *, seed: int = 7) -> None:
    """``dst`` = ``n_bytes`` of new weights followed by all of ``src`` (every byte shifts by n_bytes)."""
    head = os.path.join(os.path.dirname(dst), ".insert.partial")
    write_weights(head, n_bytes, seed=seed)
    with open(dst + ".partial", "wb") as out:
        for part in (head, src):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 16 * MIB)
    os.unlink(head)
    os.replace(dst + ".partial", dst)


def synthetic_series(out_dir: str, size: int, *, seed: int = 0) -> dict:
    """v1 base, v2 = 10% of the 4 MiB chunks changed in place, v3 = v2 with 1 MiB inserted at the start."""
    paths = [os.path.join(out_dir, "synthetic", f"v{k}", "weights.f32") for k in (1, 2, 3)]
    for p in paths:
        os.makedirs(os.path.dirname(p), exist_ok=True)
    synthetic(paths[0], size, seed)
    changed = write_changed_copy(paths[0], paths[1], chunk_size=CHUNK_SIZE)
    insert_at_start(paths[1], paths[2])
    sizes = [os.path.getsize(p) for p in paths]
    return {
        "name": "synthetic", "kind": "synthetic", "cas_chunk_size": CHUNK_SIZE, "size": size,
        "versions": [
            {"version": 1, "what": f"{format_size(size)} float32 N(0, 0.02)", "path": paths[0],
             "bytes": sizes[0]},
            {"version": 2, "what": f"{len(changed)} of {len(range(0, size, CHUNK_SIZE))} 4 MiB chunks changed in place",
             "path": paths[1], "bytes": sizes[1]},
            {"version": 3, "what": f"{format_size(INSERT_BYTES)} inserted at the start (bytes shift)", "path": paths[2],
             "bytes": sizes[2]},
        ],
    }


# -- the model series -------------------------------------------------------------------------------


def build_model(arch: str, input_size: int, *, n_classes: int = 10, seed: int = 0, **arch_kwargs):
    """(model, base): ``keras.applications.<arch>`` without its top, random weights, + a Dense head.

    ``arch="tiny"`` is a four-block conv net shaped like them (conv, BatchNorm, ReLU), for tests.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if arch == "tiny":
        base = _tiny_base(input_size)
    else:
        base = getattr(keras.applications, arch)(input_shape=(input_size, input_size, 3), include_top=False,
                                                 weights=None, pooling="avg", **arch_kwargs)
    inputs = keras.Input((input_size, input_size, 3))
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="head")(base(inputs))
    return keras.Model(inputs, outputs, name=f"{arch.lower()}_classifier"), base


def _tiny_base(input_size: int):
    import keras
    from keras import layers

    x = inputs = keras.Input((input_size, input_size, 3))
    for i, width in enumerate((16, 32, 64, 64)):
        x = layers.Conv2D(width, 3, strides=2 if i else 1, padding="same", name=f"block{i + 1}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = layers.Activation("relu", name=f"block{i + 1}_relu")(x)
    return keras.Model(inputs, layers.GlobalAveragePooling2D(name="avg_pool")(x), name="tiny")


def set_stage(base, stage: int, unfreeze: int) -> None:
    """Trainable flags for stage 0..3 (see STAGES). The head is always trainable."""
    base.trainable = stage != 1
    if stage == 1:
        return
    # Keras 3 does not reset sublayers that were frozen one by one: set every layer's flag.
    first_trained = len(base.layers) - unfreeze if stage == 2 else 0
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= first_trained


def train_steps(model, *, steps: int, batch: int, n_classes: int, seed: int, optimizer_state: bool = False) -> None:
    """Recompile (a new optimizer, as after changing ``trainable``) and train ``steps`` on random data.

    Without ``optimizer_state`` the model is compiled again afterwards with a fresh, unbuilt
    optimizer, so the saved files hold the weights (as for serving) and not Adam's two slots per
    trained weight, which would triple a full fine-tune's file.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    size = model.input_shape[1]
    x = rng.random((steps * batch, size, size, 3), dtype=np.float32)
    y = rng.integers(0, n_classes, steps * batch)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    if not optimizer_state:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")


def save_own(model, fmt: str, path: str) -> None:
    """Keras' own saver: what users have."""
    if fmt == "savedmodel":
        model.export(path, format="tf_saved_model", verbose=False)
    else:
        model.save(path)


def model_series(out_dir: str, *, arch: str = "ResNet50", input_size: int = 64, formats=FORMATS,
                 steps: int = 2, batch: int = 8, unfreeze: int = 10, n_classes: int = 10,
                 optimizer_state: bool = False, seed: int = 0, log=print, **arch_kwargs) -> list[dict]:
    """Generate v1..v4 (see STAGES) in every format; one dict per series (see series.json)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format {bad}; formats {FORMATS}")
    model, base = build_model(arch, input_size, n_classes=n_classes, seed=seed, **arch_kwargs)
    if not 0 < unfreeze < len(base.layers):
        raise ValueError(f"unfreeze must be between 1 and {len(base.layers) - 1} "
                         f"(the base has {len(base.layers)} layers)")
    series = {series_name(f): {"name": series_name(f), "kind": "model", "format": f, "layout": "own",
                                    "arch": arch, "input": input_size, "params": int(model.count_params()),
                                    "optimizer_state": optimizer_state, "cas_chunk_size": MODEL_CHUNK_SIZE,
                                    "versions": []} for f in formats}
    for stage, what in enumerate(STAGES):
        t0 = time.perf_counter()
        set_stage(base, stage, unfreeze)
        train_steps(model, steps=steps, batch=batch, n_classes=n_classes, seed=seed * 100 + stage,
                    optimizer_state=optimizer_state)
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        t_train = time.perf_counter() - t0
        for fmt in formats:
            s = series[series_name(fmt)]
            path = os.path.join(out_dir, s["name"], f"v{stage + 1}", FILE_NAMES[fmt])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.isdir(path):
                shutil.rmtree(path)
            save_own(model, fmt, path)
            s["versions"].append({"version": stage + 1, "what": what, "trainable_params": trainable,
                                  "path": path, "bytes": tree_size(path)})
        log(f"v{stage + 1} {what}: {trainable:,} trainable parameters; trained in {t_train:.1f} s, "
            f"saved in {time.perf_counter() - t0 - t_train:.1f} s")
    return list(series.values())


def tree_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names)


def generate(out_dir: str, *, synthetic_size: int | None = None, log=print, **model_options) -> dict:
    """Model series (unless ``formats`` is empty) and, with ``synthetic_size``, the synthetic series;
    writes and returns ``OUT_DIR/series.json``."""
    os.makedirs(out_dir, exist_ok=True)
    result = {"series": []}
    if model_options.get("formats", FORMATS):
        result["series"] += model_series(out_dir, log=log, **model_options)
    if synthetic_size:
        t0 = time.perf_counter()
        result["series"].append(synthetic_series(out_dir, synthetic_size))
        log(f"synthetic {format_size(synthetic_size)} series in {time.perf_counter() - t0:.1f} s")
    with open(os.path.join(out_dir, "series.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def load_series(out_dir: str) -> list[dict]:
    with open(os.path.join(out_dir, "series.json")) as f:
        return json.load(f)["series"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--arch", default="ResNet50", help="a keras.applications model (default ResNet50), or tiny")
    p.add_argument("--input", type=int, default=64, help="input height = width (default 64)")
    p.add_argument("--formats", default="keras,h5,savedmodel", help="comma-separated; '' for none")
    p.add_argument("--steps", type=int, default=2, help="training steps per version (default 2)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--unfreeze", type=int, default=10, help="base layers trained in v3 (default 10)")
    p.add_argument("--optimizer-state", action="store_true", help="keep Adam's slots in the files (default: not)")
    p.add_argument("--synthetic", type=parse_size, metavar="SIZE", help="also the synthetic series, e.g. 1GiB")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    out = generate(a.out_dir, arch=a.arch, input_size=a.input, formats=[f for f in a.formats.split(",") if f],
                   steps=a.steps, batch=a.batch,
                   unfreeze=a.unfreeze, optimizer_state=a.optimizer_state, synthetic_size=a.synthetic)
    for s in out["series"]:
        sizes = ", ".join(f"v{v['version']} {v['bytes'] / 1e6:.1f} MB" for v in s["versions"])
        print(f"{s['name']:12s} {sizes}")
    print(f"done in {time.perf_counter() - t0:.0f} s: {os.path.join(a.out_dir, 'series.json')}")


if __name__ == "__main__":
    main()
