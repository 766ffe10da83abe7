"""Parallel inference: N worker processes, each loading a stored model once from its local copy.

The parent checks the version out once (fetched, verified, renamed into place, or reused with no
bytes moved); every worker loads that same local copy, so the store is read at most once. Workers
are started with the "spawn" method (TensorFlow is not fork-safe) and each keeps its TensorFlow
thread pools small so N workers do not oversubscribe the cores. The parent itself never imports
TensorFlow.

Inputs are cut into contiguous shards on ``batch_size`` boundaries, so every batch a worker runs
holds exactly the rows the same batch holds in a single-process ``predict`` with that
``batch_size``; the shards' results are concatenated back in input order.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
import multiprocessing

import numpy as np

from .errors import CasError
from .store import Store
from .tensorflow import LocalModel, checkout_model, load_local

DEFAULT_BATCH_SIZE = 32
SHARDS_PER_WORKER = 2  # a little slack so a worker that starts late does not hold up the rest


def parallel_predict(ref: str, inputs, *, workers: int = 2, store: Store | str | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE, threads_per_worker: int | None = None):
    """Predict ``inputs`` (an array, or the path of a ``.npy`` file) with model ``ref`` in
    ``workers`` processes; returns the predictions in input order (an array, or a list/dict of
    arrays for a multi-output model), equal to ``predict_local`` in one process.

    ``threads_per_worker`` (TensorFlow intra-op threads) defaults to the CPU count divided by
    ``workers``, at least 1.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    local = checkout_model(ref, store=store)
    with tempfile.TemporaryDirectory(prefix="cas-predict-") as tmp:
        if isinstance(inputs, (str, os.PathLike)):
            input_path = os.fspath(inputs)
        else:
            input_path = os.path.join(tmp, "inputs.npy")
            np.save(input_path, np.asarray(inputs))
        n_rows = _row_count(input_path)
        shards = shard_bounds(n_rows, workers * SHARDS_PER_WORKER, batch_size)
        if not shards:
            raise ValueError(f"no inputs to predict: {input_path!r} has 0 rows")
        ctx = multiprocessing.get_context("spawn")
        n_procs = min(workers, len(shards))
        try:
            with ProcessPoolExecutor(n_procs, mp_context=ctx, initializer=_init_worker,
                                     initargs=(local, threads)) as pool:
                futures = [pool.submit(_predict_shard, input_path, start, stop, batch_size) for start, stop in shards]
                parts = [f.result() for f in futures]
        except BrokenProcessPool as exc:
            raise CasError(f"a prediction worker for {local.ref} died ({exc}); run with workers=1 to see why") from None
    return _concatenate(parts)


def shard_bounds(n_rows: int, n_shards: int, batch_size: int) -> list[tuple[int, int]]:
    """Split ``n_rows`` into at most ``n_shards`` contiguous (start, stop) ranges on batch boundaries."""
    n_batches = -(-n_rows // batch_size)
    n_shards = max(1, min(n_shards, n_batches))
    out = []
    for i in range(n_shards):
        first, last = i * n_batches // n_shards, (i + 1) * n_batches // n_shards
        start, stop = first * batch_size, min(last * batch_size, n_rows)
        if stop > start:
            out.append((start, stop))
    return out


def predict_local(model, inputs, *, batch_size: int = DEFAULT_BATCH_SIZE):
    """What one process computes for ``inputs``: Keras ``predict``, or a SavedModel's ``serve``
    endpoint (else its ``serving_default`` signature) batch by batch."""
    if hasattr(model, "predict"):
        return model.predict(inputs, batch_size=batch_size, verbose=0)
    fn = getattr(model, "serve", None)
    signature = None
    if fn is None:
        signature = model.signatures.get("serving_default")
        if signature is None:
            raise CasError("this SavedModel has neither a 'serve' endpoint nor a 'serving_default' signature to predict with")
    parts = []
    for start in range(0, len(inputs), batch_size):
        batch = np.asarray(inputs[start:start + batch_size])
        if signature is not None:
            out = signature(batch)
            out = next(iter(out.values())) if len(out) == 1 else dict(out)
        else:
            out = fn(batch)
        parts.append(_to_numpy(out))
    return _concatenate(parts)


# -- worker side ---------------------------------------------------------------------------------

_worker: dict = {}


def _init_worker(local: LocalModel, threads: int) -> None:
    """Runs once per worker process: small thread pools, then load the model from the local copy."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        _worker["model"] = load_local(local, compile=False)
    except BaseException as exc:  # reported by the first task, so the parent sees the real cause
        _worker["error"] = exc


def _predict_shard(input_path: str, start: int, stop: int, batch_size: int):
    if "error" in _worker:
        raise _worker["error"]
    inputs = np.load(input_path, mmap_mode="r")
    return predict_local(_worker["model"], np.ascontiguousarray(inputs[start:stop]), batch_size=batch_size)


# -- helpers -------------------------------------------------------------------------------------


def _row_count(path: str) -> int:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise CasError(f"cannot read inputs {path!r}: {exc}; expected a .npy array (np.save)") from None
    if arr.ndim == 0:
        raise CasError(f"inputs {path!r} hold a scalar; expected an array with one row per example")
    return arr.shape[0]


def _to_numpy(out):
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [_to_numpy(v) for v in out]
    return np.asarray(out)


def _concatenate(parts: list):
    first = parts[0]
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, (list, tuple)):
        return [np.concatenate([p[i] for p in parts]) for i in range(len(first))]
    return np.concatenate(parts)
