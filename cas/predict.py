"""Parallel inference: N worker processes, each loading a stored model once from its local copy.

The parent checks the version out once (fetched, verified, renamed into place, or reused with no
bytes moved); every worker loads that same local copy, so the store is read at most once. Workers
are started with the "spawn" method (TensorFlow is not fork-safe) and each keeps its TensorFlow
thread pools small so N workers do not oversubscribe the cores. The parent itself never imports
TensorFlow.

The workers are quiet: they start with ``TF_CPP_MIN_LOG_LEVEL=2`` unless the caller set it, and
import TensorFlow with ``cas.tensorflow.import_tensorflow``, which keeps the C++ start-up notices
that level does not silence (the oneDNN notice, absl's warning) from being repeated by each worker.

Spawned workers re-import the caller's main script; a script that calls ``parallel_predict`` at
its top level without ``if __name__ == "__main__":`` would run again in every worker, so that is
refused up front with a message that says what to change.

Inputs are cut into contiguous shards on ``batch_size`` boundaries, so every batch a worker runs
holds exactly the rows the same batch holds in a single-process ``predict`` with that
``batch_size``; the shards' results are concatenated back in input order.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

import numpy as np

from .errors import CasError
from .store import Store
from .tensorflow import LocalModel, checkout_model, import_tensorflow, load_local

DEFAULT_BATCH_SIZE = 32
SHARDS_PER_WORKER = 2  # a little slack so a worker that starts late does not hold up the rest
QUIET_WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}  # a caller's own setting wins


def parallel_predict(ref: str, inputs, *, processes: int = 2, store: Store | str | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE, threads_per_worker: int | None = None,
                     workers: int | None = None):
    """Predict ``inputs`` (an array, or the path of a ``.npy`` file) with model ``ref`` in
    ``processes`` worker processes; returns the predictions in input order (an array, or a
    list/dict of arrays for a multi-output model), equal to ``predict_local`` in one process.

    ``threads_per_worker`` (TensorFlow intra-op threads) defaults to the CPU count divided by
    ``processes``, at least 1. ``workers`` is the old name of ``processes`` (deprecated: elsewhere
    in cas, workers are threads).
    """
    if workers is not None:
        warnings.warn("parallel_predict(workers=N) is now processes=N", DeprecationWarning, stacklevel=2)
        processes = workers
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive integer, got {processes!r}")
    refuse_unguarded_main_script()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // processes)
    local = checkout_model(ref, store=store)
    with tempfile.TemporaryDirectory(prefix="cas-predict-") as tmp:
        if isinstance(inputs, (str, os.PathLike)):
            input_path = os.fspath(inputs)
        else:
            input_path = os.path.join(tmp, "inputs.npy")
            np.save(input_path, np.asarray(inputs))
        n_rows = _row_count(input_path)
        shards = shard_bounds(n_rows, processes * SHARDS_PER_WORKER, batch_size)
        if not shards:
            raise ValueError(f"no inputs to predict: {input_path!r} has 0 rows")
        ctx = multiprocessing.get_context("spawn")
        n_procs = min(processes, len(shards))
        try:
            with ProcessPoolExecutor(n_procs, mp_context=ctx, initializer=_init_worker,
                                     initargs=(local, threads)) as pool:
                with _worker_environment(QUIET_WORKER_ENV):  # workers are spawned by the first submits
                    futures = [pool.submit(_predict_shard, input_path, start, stop, batch_size)
                               for start, stop in shards]
                parts = [f.result() for f in futures]
        except BrokenProcessPool as exc:
            raise CasError(f"a prediction worker for {local.ref} died ({exc}); its error is above, or run with "
                           "processes=1 to see why") from None
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


def refuse_unguarded_main_script() -> None:
    """Refuse, before any process starts, a call from the top level of a script that lacks
    ``if __name__ == "__main__":``.

    Workers are spawned (TensorFlow is not fork-safe), and a spawned process re-runs the parent's
    main script to find its functions: an unguarded call would run the script again in every
    worker, each of which dies trying to start workers of its own. A call from an interactive
    session, a notebook or ``python -c`` re-runs nothing and passes.
    """
    if multiprocessing.parent_process() is not None and getattr(sys.modules.get("__main__"), "__name__", "") == "__mp_main__":
        raise CasError("parallel_predict ran again inside one of its own worker processes: the main script calls it "
                       "without `if __name__ == \"__main__\":`; put that call under the guard")
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return  # not called while the main script's top level runs (e.g. from a thread it started)
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return
    running = [node for node in tree.body if node.lineno <= line <= (node.end_lineno or node.lineno)]
    if not running or _is_main_guard(running[0]):
        return  # guarded, or the file no longer matches what is running (edited since): no verdict
    raise CasError(f"{os.path.basename(path)} line {line} calls parallel_predict outside `if __name__ == \"__main__\":`; "
                   "its worker processes re-import the script and would run it again: move that code under "
                   "`if __name__ == \"__main__\":` at the bottom of the script")


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.ops) != 1:
        return False
    if not isinstance(node.test.ops[0], ast.Eq):
        return False
    sides = [node.test.left, node.test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]


@contextmanager
def _worker_environment(defaults: dict[str, str]):
    """Set ``defaults`` in the environment the workers inherit, for names the caller has not set."""
    added = [k for k in defaults if k not in os.environ]
    for k in added:
        os.environ[k] = defaults[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


# -- worker side ---------------------------------------------------------------------------------

_worker: dict = {}


def _init_worker(local: LocalModel, threads: int) -> None:
    """Runs once per worker process: small thread pools, then load the model from the local copy."""
    try:
        tf = import_tensorflow()
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
