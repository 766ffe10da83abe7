"""Save Keras/TensorFlow models into a store and load them back: ``.keras``, ``.h5``, SavedModel.

TensorFlow stays optional: this module imports it (and Keras, h5py) only inside the functions that
need it, so ``import cas`` and ``import cas.tensorflow`` never load TensorFlow.

    from cas import Store
    from cas.tensorflow import save_model, load_model
    store = Store.open("/data/models")
    save_model(model, "resnet", store=store)               # resnet@1, tagged latest
    model = load_model("resnet@1", store=store)            # fetched once, then read from the cache

Loading goes through ``Store.checkout``: the version is fetched (only the chunks that no verified
local copy of another version holds), verified and renamed into place before any loader sees it,
and a version already checked out moves no bytes. A missing or corrupt chunk fails the checkout, so
a half-written model is never loaded.

Files are written by Keras' own savers (``model.save``, ``model.export``) and put with the default
``auto`` chunker, which cuts each tensor into pieces of its own (cas.chunking): a config that
changes length before the weights (``trainable`` flags after freezing the base, a renamed model)
shifts the weight bytes but not the pieces they fall into, so a head-only fine-tune adds about its
changed tensors. (Until issue 11 save_model rewrote ``.keras`` and ``.h5`` files weights first to
keep offsets for fixed-size chunks; with ``auto`` that layout dedups no better: bench/README.md.)
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass

from . import codec
from .chunking import DEFAULT_CHUNK_SIZE
from .errors import CasError
from .manifest import KIND_DIR, KIND_FILE, Manifest
from .sizes import human_bytes
from .store import Store

FORMATS = ("keras", "h5", "savedmodel")

KERAS_SUFFIX = ".keras"
H5_SUFFIXES = (".h5", ".hdf5")
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
KERAS_DIR_FILES = ("config.json", "model.weights.h5")


class NotAModel(CasError, ValueError):
    """A version that holds no model this module can load (or a model object it cannot save)."""


@dataclass(frozen=True)
class LocalModel:
    """A verified local copy of a model version, ready for a loader."""

    ref: str  # MODEL@VERSION
    format: str  # one of FORMATS
    path: str  # the file (with its proper suffix) or the directory to hand to the loader
    manifest: Manifest


# -- save ------------------------------------------------------------------------------------------


def save_model(model, name: str, version: str | None = None, *, store: Store | str | None = None,
               format: str = "keras", tags=(), latest: bool = True, chunk_size: int | None = None,
               level: int = codec.DEFAULT_LEVEL, metadata: dict | None = None,
               include_optimizer: bool = True) -> Manifest:
    """Save ``model`` as a new version of ``name`` in the store and return its manifest.

    ``format``: ``"keras"`` (a ``.keras`` zip), ``"h5"`` (legacy HDF5) or ``"savedmodel"`` (a
    SavedModel directory, via ``model.export`` for a Keras model or ``tf.saved_model.save`` for a
    ``tf.Module``), each written by Keras' or TensorFlow's own saver. ``chunk_size`` is the put's
    (4 MiB by default; the ``auto`` chunker restarts runs at every tensor). ``include_optimizer``
    applies to ``h5`` only (Keras always saves a built optimizer into ``.keras``). The manifest's
    metadata records the format and the TensorFlow and Keras versions next to ``metadata``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    import keras
    import tensorflow as tf

    if format != "savedmodel" and not isinstance(model, keras.Model):
        raise NotAModel(f"cannot save {type(model).__name__} as {format!r}: only a keras.Model can be saved "
                        "as .keras or .h5; use format='savedmodel' for a tf.Module")
    meta = {"format": format, "framework": "tensorflow", "tensorflow": tf.__version__, "keras": keras.__version__}
    meta.update(metadata or {})
    with _opened(store) as s, tempfile.TemporaryDirectory(prefix="cas-save-") as tmp:
        if format == "keras":
            local_path = os.path.join(tmp, "model.keras")
            model.save(local_path)
        elif format == "h5":
            local_path = os.path.join(tmp, "model.h5")
            model.save(local_path, include_optimizer=include_optimizer)
        else:
            local_path = os.path.join(tmp, "saved_model")
            _write_saved_model(model, local_path)
        return s.put(local_path, name, version, tags=tags, latest=latest,
                     chunk_size=chunk_size or DEFAULT_CHUNK_SIZE, level=level, metadata=meta)


def _write_saved_model(model, path: str) -> None:
    import keras
    import tensorflow as tf

    if isinstance(model, keras.Model):
        model.export(path, format="tf_saved_model", verbose=False)
    elif isinstance(model, tf.Module):
        tf.saved_model.save(model, path)
    else:
        raise NotAModel(f"cannot save {type(model).__name__} as a SavedModel: expected a keras.Model or a tf.Module")


# -- load ------------------------------------------------------------------------------------------


def detect_format(manifest: Manifest) -> str:
    """The format of a stored version, judged from its manifest alone (no bytes fetched).

    Raises NotAModel naming the version and what it holds when it is not a loadable model.
    """
    ref = f"{manifest.model}@{manifest.version}"
    paths = {f.path for f in manifest.files}
    if manifest.kind == KIND_FILE:
        (entry,) = manifest.files
        lower = entry.path.lower()
        if lower.endswith(KERAS_SUFFIX):
            return "keras"
        if lower.endswith(H5_SUFFIXES):
            return "h5"
        raise NotAModel(f"{ref} is not a model cas.tensorflow can load: it holds one file {entry.path!r} "
                        f"({human_bytes(entry.size)}); expected a .keras or .h5 file or a SavedModel directory")
    if manifest.kind == KIND_DIR:
        if any(p in paths for p in SAVED_MODEL_FILES):
            return "savedmodel"
        if all(p in paths for p in KERAS_DIR_FILES):
            return "keras"
        nested = sorted(p for p in paths if p.rsplit("/", 1)[-1] in SAVED_MODEL_FILES)
        hint = f"; it has {nested[0]!r}: put that directory instead" if nested else ""
        shown = ", ".join(repr(p) for p in sorted(paths)[:5]) + (", ..." if len(paths) > 5 else "")
        raise NotAModel(f"{ref} is not a model cas.tensorflow can load: it is a directory of {len(paths)} files "
                        f"({shown or 'none'}) without saved_model.pb or a Keras config.json + model.weights.h5{hint}")
    raise NotAModel(f"{ref} has unknown kind {manifest.kind!r}")


def checkout_model(ref: str, *, store: Store | str | None = None) -> LocalModel:
    """Verified local copy of a model version (fetched only if needed) and its format.

    The format is checked from the manifest before any byte moves, then against the fetched
    bytes (a zip, an HDF5 file), so a mislabelled file fails here with a clear message instead
    of deep inside Keras.
    """
    with _opened(store) as s:
        manifest = s.manifest(ref)
        fmt = detect_format(manifest)
        path = s.checkout(f"{manifest.model}@{manifest.version}")
    name = f"{manifest.model}@{manifest.version}"
    if manifest.kind == KIND_FILE:  # the checkout keeps the stored name, so its suffix tells Keras the format
        _check_signature(name, manifest.files[0].path, path, fmt)
    return LocalModel(name, fmt, path, manifest)


def load_model(ref: str, *, store: Store | str | None = None, compile: bool = True, custom_objects=None,
               safe_mode: bool = True):
    """Load a stored model: a ``keras.Model`` for ``.keras``/``.h5``, the object
    ``tf.saved_model.load`` returns for a SavedModel (call its ``serve`` endpoint or signatures).

    The version is fetched into the local cache first (or its verified copy reused: no bytes
    move); loading v2 after v1 fetches only the chunks v2 does not share with v1.
    """
    local = checkout_model(ref, store=store)
    return load_local(local, compile=compile, custom_objects=custom_objects, safe_mode=safe_mode)


def load_local(local: LocalModel, *, compile: bool = True, custom_objects=None, safe_mode: bool = True):
    """Load a checked-out model (what worker processes call; no store access)."""
    if local.format == "savedmodel":
        import tensorflow as tf

        return tf.saved_model.load(local.path)
    import keras

    return keras.saving.load_model(local.path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def _check_signature(ref: str, stored_name: str, path: str, fmt: str) -> None:
    """Refuse a file whose bytes are not what its name promises (a zip, an HDF5 file)."""
    if fmt == "keras":
        ok = zipfile.is_zipfile(path)
        kind = "zip (.keras)"
    else:
        import h5py

        ok = h5py.is_hdf5(path)
        kind = "HDF5 (.h5)"
    if not ok:
        with open(path, "rb") as f:
            head = f.read(8)
        raise NotAModel(f"{ref} holds {stored_name!r}, named like a {kind} file, but it is not one (it starts "
                        f"with {head!r}); it is not a model cas.tensorflow can load")


@contextmanager
def _opened(store: Store | str | None):
    """Use the given Store, or open (and afterwards close) one from a URL or the default."""
    if isinstance(store, Store):
        yield store
        return
    s = Store.open(store)
    try:
        yield s
    finally:
        s.close()


# -- importing TensorFlow quietly ------------------------------------------------------------------

# Lines TensorFlow's C++ side writes to stderr on import whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.16+
# logs through absl before absl is initialised): notices, not problems.
STARTUP_NOTICES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on.",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
)


def import_tensorflow():
    """Import TensorFlow (once) with its C++ start-up notices (``STARTUP_NOTICES``: the oneDNN
    notice, absl's pre-initialisation warning) kept off stderr; every other line it writes passes
    through. ``TF_CPP_MIN_LOG_LEVEL=0`` (you asked for every info line) keeps them too.

    The notices come from C++ straight to file descriptor 2, so the import runs with fd 2 pointed
    at a temporary file whose lines are copied back, minus the notices, when it returns.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow as tf

        return tf
    with _stderr_without(STARTUP_NOTICES):
        import tensorflow as tf
    return tf


class _stderr_without:
    """Send file descriptor 2 to a temporary file meanwhile; then copy its lines back to stderr,
    leaving out those that contain any of ``patterns``."""

    def __init__(self, patterns) -> None:
        self.patterns = tuple(patterns)

    def __enter__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.capture = tempfile.TemporaryFile()
        os.dup2(self.capture.fileno(), 2)

    def __exit__(self, *exc) -> None:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        with self.capture:
            self.capture.seek(0)
            kept = [line for line in self.capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(p in line for p in self.patterns)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
