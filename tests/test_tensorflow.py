"""cas.tensorflow and cas.predict with real, small Keras models in every format."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from cas import CorruptChunk, NotFound, Store  # noqa: E402
from cas.chunking import DEFAULT_CHUNK_SIZE  # noqa: E402
from cas.cli import main as cli_main  # noqa: E402
from cas.predict import parallel_predict, predict_local, shard_bounds  # noqa: E402
from cas.tensorflow import (FORMATS, NotAModel, checkout_model, detect_format,  # noqa: E402
                            load_model, save_model)

pytestmark = pytest.mark.tensorflow

SMALL_CHUNK = 64 * 1024
INPUT_SHAPE = (16, 16, 3)


def build_model(seed: int = 0):
    """A small base (~1.2 MB of weights, conv + batch norm + dense) and a separate 4-class head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(16, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    base = keras.Model(inp, x, name="base")
    top_in = keras.Input(INPUT_SHAPE)
    out = keras.layers.Dense(4, activation="softmax", name="head")(base(top_in))
    model = keras.Model(top_in, out, name="classifier")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model, base


def fine_tune_head(model, base) -> None:
    base.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.random((32, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, 4, 32)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)


def sample_inputs(n: int = 40, seed: int = 2):
    return np.random.default_rng(seed).random((n, *INPUT_SHAPE), dtype=np.float32)


@pytest.fixture
def store(tmp_path):
    with Store.open(str(tmp_path / "store"), cache_dir=str(tmp_path / "cache")) as s:
        yield s


@pytest.fixture(scope="module")
def tiny():
    model, base = build_model()
    return model, base


def weights_of(obj) -> list:
    return [np.asarray(v) for v in (obj.weights if hasattr(obj, "weights") else obj.variables)]


def same_arrays(a: list, b: list) -> bool:
    """Bit-exact equality of two collections of arrays, ignoring order."""
    def key(x):
        return (x.shape, x.dtype.str, x.tobytes())
    return sorted(map(key, a)) == sorted(map(key, b))


# -- import hygiene ---------------------------------------------------------------------------------


def test_import_cas_never_imports_tensorflow():
    code = ("import sys, cas, cas.tensorflow, cas.predict, cas.cli; "
            "bad = [m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_bit_exact(store, tiny, fmt):
    model, _ = tiny
    m = save_model(model, f"tiny-{fmt}", store=store, format=fmt, metadata={"run": "t1"})
    assert m.chunk_size == DEFAULT_CHUNK_SIZE
    assert m.metadata["format"] == fmt and m.metadata["run"] == "t1" and m.metadata["tensorflow"] == tf.__version__
    assert detect_format(store.manifest(f"tiny-{fmt}")) == fmt

    loaded = load_model(f"tiny-{fmt}", store=store)
    # a fresh cache: every distinct chunk comes from the store (a SavedModel repeats tensors, fetched once)
    assert store.last_transfer.fetched_bytes == sum(m.chunk_lengths().values())
    assert same_arrays(weights_of(model), weights_of(loaded))
    x = sample_inputs()
    expected = model.predict(x, batch_size=16, verbose=0)
    got = predict_local(loaded, x, batch_size=16)
    if fmt == "savedmodel":
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(got, expected)

    load_model(f"tiny-{fmt}@{m.version}", store=store)  # already fetched: no bytes move
    assert store.last_transfer.fetched_bytes == 0 and store.last_transfer.reused_bytes == 0


def test_keras_file_is_keras_own_cut_at_its_tensors_and_loads_with_plain_keras(store, tiny, tmp_path):
    model, _ = tiny
    m = save_model(model, "tiny", store=store)
    assert m.files[0].chunker["name"] == "auto" and m.files[0].chunker["format"] == "zip"
    local = checkout_model("tiny", store=store)
    import zipfile
    with zipfile.ZipFile(local.path) as zf:
        names = zf.namelist()
    assert names[-1] == "model.weights.h5"  # Keras' own layout: config first, then the weights
    # What `cas get` writes is an ordinary .keras file.
    out = tmp_path / "out.keras"
    store.get("tiny", str(out))
    again = keras.saving.load_model(str(out))
    assert same_arrays(weights_of(model), weights_of(again))


def test_saved_model_directory_with_many_files(store, tmp_path):
    """A sharded SavedModel with assets and nested directories, stored and loaded as one version."""
    class Scaler(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(3)
            self.ws = [tf.Variable(rng.random((64, 64), dtype=np.float32)) for _ in range(12)]
            self.vocab = tf.saved_model.Asset(str(vocab))

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32)])
        def serve(self, x):
            for w in self.ws:
                x = tf.tanh(tf.matmul(x, w))
            return x

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    src = tmp_path / "sm"
    options = tf.saved_model.SaveOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=40_000))
    module = Scaler()
    tf.saved_model.save(module, str(src), options=options)
    files = sorted(os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(src) for f in fs)
    assert len(files) >= 8 and any(f.startswith("assets/") for f in files)

    m = store.put(str(src), "sharded", chunk_size=SMALL_CHUNK)
    assert len(m.files) == len(files)
    local = checkout_model("sharded", store=store)
    assert local.format == "savedmodel"
    for rel in files:
        with open(os.path.join(src, rel), "rb") as a, open(os.path.join(local.path, rel), "rb") as b:
            assert a.read() == b.read(), rel
    loaded = load_model("sharded", store=store)
    x = np.random.default_rng(4).random((5, 64), dtype=np.float32)
    np.testing.assert_array_equal(loaded.serve(x).numpy(), module.serve(x).numpy())
    assert same_arrays([w.numpy() for w in module.ws], [v.numpy() for v in loaded.ws])


# -- dedup --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_head_only_fine_tune_dedups(store, fmt):
    """v2 (head fine-tuned, base frozen) adds a small part of v1's bytes, and loading v2 after
    v1 fetches only the chunks v2 does not share with v1."""
    model, base = build_model(seed=5)
    v1 = save_model(model, "clf", store=store, format=fmt, chunk_size=SMALL_CHUNK)
    assert store.last_transfer.sent_raw_bytes == sum(v1.chunk_lengths().values())  # a SavedModel repeats tensors
    before = [w.numpy().copy() for w in base.weights]
    fine_tune_head(model, base)
    assert same_arrays(before, [w.numpy() for w in base.weights])  # the base really is untouched
    v2 = save_model(model, "clf", store=store, format=fmt, chunk_size=SMALL_CHUNK)
    added = store.last_transfer.sent_raw_bytes
    # The ideal (head + optimizer state) is ~1% of this 1.1 MB model; the rest is pieces of layout.
    assert added < 0.25 * v2.size, f"{fmt}: v2 added {added} of {v2.size} bytes"

    load_model(f"clf@{v1.version}", store=store)
    loaded = load_model(f"clf@{v2.version}", store=store)
    t = store.last_transfer
    distinct = sum(v2.chunk_lengths().values())
    assert t.fetched_bytes <= added and t.reused_bytes >= distinct - added
    assert t.fetched_bytes + t.reused_bytes <= distinct
    x = sample_inputs(16)
    np.testing.assert_allclose(predict_local(loaded, x, batch_size=16),
                               model.predict(x, batch_size=16, verbose=0), rtol=1e-6, atol=1e-7)


# -- bad input ------------------------------------------------------------------------------------------


def test_a_random_file_is_not_a_model(store, tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(os.urandom(100_000))
    store.put(str(blob), "blob")
    with pytest.raises(NotAModel, match=r"blob@1 .*'weights\.bin'.*expected a \.keras or \.h5"):
        load_model("blob", store=store)
    assert not os.path.exists(store.cache.checkout_dir("blob", "1"))  # refused before fetching


def test_a_directory_without_saved_model_pb_is_not_a_model(store, tmp_path):
    d = tmp_path / "export"
    (d / "1" / "variables").mkdir(parents=True)
    (d / "1" / "saved_model.pb").write_bytes(b"x")
    (d / "README").write_text("hi")
    store.put(str(d), "exp")
    with pytest.raises(NotAModel, match=r"exp@1 .*directory of 2 files.*'1/saved_model\.pb'"):
        load_model("exp", store=store)


def test_a_file_named_keras_that_is_not_a_zip(store, tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_bytes(b"not a zip" * 1000)
    store.put(str(fake), "fake")
    with pytest.raises(NotAModel, match=r"fake@1 holds 'model\.keras'.*not one"):
        load_model("fake", store=store)


def test_save_rejects_unknown_format(store, tiny):
    with pytest.raises(ValueError, match="format must be one of"):
        save_model(tiny[0], "x", store=store, format="onnx")


def _chunk_files(store_root):
    """Chunk objects and packs (a small model's chunks are packed)."""
    return sorted(os.path.join(d, f) for sub in ("chunks", "packs")
                  for d, _, fs in os.walk(os.path.join(store_root, sub)) for f in fs)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_chunk_fails_clearly_and_loads_nothing(tmp_path, tiny, damage):
    model, _ = tiny
    root = str(tmp_path / "store")
    with Store.open(root, cache_dir=str(tmp_path / "writer-cache")) as s:
        save_model(model, "tiny", store=s, chunk_size=SMALL_CHUNK)
    victim = max(_chunk_files(root), key=os.path.getsize)
    if damage == "corrupt":
        data = bytearray(open(victim, "rb").read())
        data[-100:] = bytes(b ^ 0xFF for b in data[-100:])
        with open(victim, "wb") as f:
            f.write(data)
    else:
        os.unlink(victim)

    cache = tmp_path / "reader-cache"
    with Store.open(root, cache_dir=str(cache)) as s:
        expected = CorruptChunk if damage == "corrupt" else NotFound
        with pytest.raises(expected, match=r"tiny@1"):
            load_model("tiny", store=s)
        checkout = s.cache.checkout_path(s.manifest("tiny@1"))
        assert not os.path.exists(checkout)
        leftovers = [f for d, _, fs in os.walk(cache) for f in fs if "cas-partial" in f]
        assert not leftovers
        with pytest.raises(expected):  # a second try fails the same way: nothing half-made is reused
            load_model("tiny", store=s)


# -- parallel inference ------------------------------------------------------------------------------


def test_shard_bounds_cover_rows_on_batch_boundaries():
    assert shard_bounds(100, 4, 16) == [(0, 16), (16, 48), (48, 80), (80, 100)]
    assert shard_bounds(5, 8, 32) == [(0, 5)]
    assert shard_bounds(0, 2, 32) == []
    for n in range(0, 130, 7):
        bounds = shard_bounds(n, 3, 10)
        assert [r for a, b in bounds for r in range(a, b)] == list(range(n))
        assert all(a % 10 == 0 for a, _ in bounds)


@pytest.mark.parametrize("fmt", ["keras", "savedmodel"])
def test_parallel_predict_equals_single_process(store, tiny, fmt):
    model, _ = tiny
    save_model(model, "par", store=store, format=fmt)
    x = sample_inputs(100)
    single = predict_local(load_model("par", store=store), x, batch_size=16)
    got = parallel_predict("par", x, processes=2, store=store, batch_size=16)
    assert got.shape == single.shape
    np.testing.assert_allclose(got, single, rtol=1e-6, atol=1e-7)
    assert store.last_transfer.fetched_bytes == 0  # workers used the local copy


def test_cli_predict(tmp_path, tiny, monkeypatch, capsys):
    model, _ = tiny
    monkeypatch.setenv("CAS_CACHE_DIR", str(tmp_path / "cache"))
    root = str(tmp_path / "store")
    with Store.open(root) as s:
        save_model(model, "cli", store=s)
    x = sample_inputs(50)
    np.save(tmp_path / "in.npy", x)
    out = tmp_path / "out.npy"
    rc = cli_main(["--store", root, "predict", "cli", str(tmp_path / "in.npy"), "-o", str(out), "--processes", "2",
                   "--batch-size", "16"])
    assert rc == 0, capsys.readouterr().err
    assert "50 predictions" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --workers means threads, before the command; predict says what it takes
        cli_main(["--store", root, "predict", "cli", str(tmp_path / "in.npy"), "-o", str(out), "--workers", "2"])
    assert "cas predict takes --processes N" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(out), model.predict(x, batch_size=16, verbose=0), rtol=1e-6, atol=1e-7)
    # as `python -m cas`, whose __main__ module is the main script its spawned workers re-import
    by_module = subprocess.run([sys.executable, "-m", "cas", "--store", root, "predict", "cli", str(tmp_path / "in.npy"),
                                "-o", str(tmp_path / "out2.npy"), "--processes", "2", "--batch-size", "16"],
                               capture_output=True, text=True, timeout=600)
    assert by_module.returncode == 0, by_module.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out2.npy"), np.load(out))

    rc = cli_main(["--store", root, "predict", "nope", str(tmp_path / "in.npy"), "-o", str(out)])
    assert rc == 1 and "no model named 'nope'" in capsys.readouterr().err


PREDICT_SCRIPT = """\
import numpy as np
from cas.predict import parallel_predict

def run():
    x = np.load({inputs!r})
    out = parallel_predict("script", x, processes=2, store={store!r}, batch_size=16)
    print("predicted", out.shape)
"""


def _script(tmp_path, tiny, body: str) -> tuple[str, dict]:
    model, _ = tiny
    root = str(tmp_path / "store")
    with Store.open(root, cache_dir=str(tmp_path / "cache")) as s:
        save_model(model, "script", store=s)
    np.save(tmp_path / "in.npy", sample_inputs(40))
    path = tmp_path / "predict_script.py"
    path.write_text(PREDICT_SCRIPT.format(inputs=str(tmp_path / "in.npy"), store=root) + body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["CAS_CACHE_DIR"] = str(tmp_path / "cache")
    return str(path), env


def test_a_script_without_a_main_guard_is_told_what_to_change_before_any_worker_starts(tmp_path, tiny):
    path, env = _script(tmp_path, tiny, "run()\n")
    done = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cas.errors.CasError: predict_script.py line 8 calls parallel_predict outside "
                           '`if __name__ == "__main__":`'), done.stderr
    assert "worker" not in done.stderr.split("CasError")[0]  # no worker was started, none died


def test_a_guarded_script_predicts_and_its_workers_keep_tensorflows_start_up_lines_to_themselves(tmp_path, tiny):
    path, env = _script(tmp_path, tiny, 'if __name__ == "__main__":\n    run()\n')
    done = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "predicted (40, 4)"
    assert "oneDNN" not in done.stderr and "cpu_feature_guard" not in done.stderr, done.stderr
