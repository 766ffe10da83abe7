"""The local side cache: where versions were fetched to, and verified checkouts.

It never holds a second copy of chunks. It remembers where each version of a model was last
materialised (``places``) and keeps small copies of those manifests, so a later get of another
version can read the chunks they share from local disk instead of the store. Every reused
chunk is re-hashed before use: a file the user edited since is simply not reused. For a directory
version it also records the identity of the files the get left there (``trees``: inode, size,
modification and change time), so ``get --force`` replaces only files nobody has touched since.

``checkouts/<model>/<version>/`` holds whole versions materialised for loaders (``Store.checkout``), each with a
marker that records sizes and modification times, so reusing a checkout moves no bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid

from .digest import DEFAULT_CHUNK_HASH, ChunkHash
from .localfs import sweep_dead_partials, tree_identity
from .manifest import KIND_DIR, KIND_FILE, MAX_MANIFEST_BYTES, Manifest, unpack
from .names import is_valid_name

MAX_PLACES_PER_VERSION = 4
MAX_STAGING_DIRS = 64  # directories where recent gets staged, swept by gc for killed gets' leftovers


def default_cache_root() -> str:
    if os.environ.get("CAS_CACHE_DIR"):
        return os.environ["CAS_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cas")


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def materialised_path(root: str, manifest: Manifest, rel_path: str) -> str:
    """Where file ``rel_path`` of a version materialised at ``root`` lives."""
    if manifest.kind == KIND_FILE:
        return root
    return os.path.join(root, *rel_path.split("/"))


class LocalCache:
    def __init__(self, root: str, store_url: str) -> None:
        self.root = os.path.join(root, hashlib.sha256(os.fsencode(store_url)).hexdigest()[:16])

    # -- where versions were fetched ---------------------------------------------------------

    def _manifest_path(self, model: str, version: str) -> str:
        return os.path.join(self.root, "manifests", model, version + ".msgpack")

    def _places_path(self, model: str, version: str) -> str:
        return os.path.join(self.root, "places", model, version + ".json")

    def remember(self, manifest: Manifest, packed: bytes, destination: str) -> None:
        """Record that ``manifest``'s version now sits complete at ``destination``."""
        model, version = manifest.model, manifest.version
        if not os.path.exists(self._manifest_path(model, version)):
            _write_atomic(self._manifest_path(model, version), packed)
        destination = os.path.abspath(destination)  # one place however it is spelled, not 4 copies of it
        places = [p for p in self._places(model, version) if p != destination]
        places = [destination] + places[: MAX_PLACES_PER_VERSION - 1]
        _write_atomic(self._places_path(model, version), json.dumps(places).encode())
        if manifest.kind == KIND_DIR:
            self.remember_tree(destination)

    def _places(self, model: str, version: str) -> list[str]:
        try:
            with open(self._places_path(model, version), "rb") as f:
                places = json.load(f)
            return [p for p in places if isinstance(p, str)]
        except (OSError, ValueError):
            return []

    # -- what a get left at a destination (for get --force, see localfs.replace_refusal) ---------

    def _tree_path(self, destination: str) -> str:
        return os.path.join(self.root, "trees", hashlib.sha256(os.fsencode(destination)).hexdigest()[:32] + ".json")

    def remember_tree(self, destination: str) -> None:
        """Record the identity of the directory tree a get just left at ``destination``."""
        destination = os.path.abspath(destination)
        record = {"destination": destination, "tree": tree_identity(destination)}
        _write_atomic(self._tree_path(destination), json.dumps(record).encode())

    def tree_at(self, destination: str) -> dict | None:
        """The ``tree_identity`` the last get recorded at ``destination``; None if none (or damaged)."""
        destination = os.path.abspath(destination)
        try:
            with open(self._tree_path(destination), "rb") as f:
                record = json.load(f)
            tree = record["tree"]
            if record["destination"] != destination or not isinstance(tree, dict) or not all(
                    isinstance(k, str) and (v is None or v == "dir" or (isinstance(v, list) and all(type(x) is int for x in v)))
                    for k, v in tree.items()):
                return None
            return tree
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no record, or a damaged one: nothing there counts as a checkout

    def seeds(self, model: str) -> "Seeds":
        """Local copies of chunks from every remembered version of ``model``."""
        seeds = Seeds()
        place_dir = os.path.join(self.root, "places", model)
        try:
            names = os.listdir(place_dir)
        except OSError:
            return seeds
        for name in names:
            version = name[: -len(".json")]
            if not name.endswith(".json") or not is_valid_name(version):
                continue  # not ours: never a path component
            try:
                with open(self._manifest_path(model, version), "rb") as f:
                    manifest = unpack(f.read(MAX_MANIFEST_BYTES + 1), name=f"cached manifest {model}@{version}")
            except Exception:  # a damaged cache entry only costs reuse
                continue
            for place in self._places(model, version):
                seeds.add_version(manifest, place)
        return seeds

    # -- where gets staged (for gc's sweep of killed gets' leftovers) ---------------------------

    def _staging_dirs_path(self) -> str:
        return os.path.join(self.root, "staging-dirs.json")

    def _staging_dirs(self) -> list[str]:
        try:
            with open(self._staging_dirs_path(), "rb") as f:
                dirs = json.load(f)
            return [d for d in dirs if isinstance(d, str)] if isinstance(dirs, list) else []
        except (OSError, ValueError):
            return []

    def note_staging_dir(self, directory: str) -> None:
        """Remember that a get stages in ``directory``, so a later gc can sweep it if the get is killed."""
        directory = os.path.abspath(directory)
        dirs = self._staging_dirs()
        if dirs[:1] != [directory]:
            dirs = [directory] + [d for d in dirs if d != directory][: MAX_STAGING_DIRS - 1]
            _write_atomic(self._staging_dirs_path(), json.dumps(dirs).encode())

    def sweep_dead_partials(self) -> list[str]:
        """Remove the leftovers of killed gets in every directory recent gets staged in; their paths."""
        removed = []
        for directory in self._staging_dirs():
            removed += sweep_dead_partials(directory)
        return removed

    # -- checkouts -----------------------------------------------------------------------------

    def checkout_dir(self, model: str, version: str) -> str:
        return os.path.join(self.root, "checkouts", model, version)

    def checkout_path(self, manifest: Manifest) -> str:
        """Where a version's checkout lives: a single file keeps its stored name (loaders such as
        Keras pick their reader by suffix), a directory version is ``tree/``."""
        base = self.checkout_dir(manifest.model, manifest.version)
        if manifest.kind == KIND_FILE:
            return os.path.join(base, "file", manifest.files[0].path)
        return os.path.join(base, "tree")

    def _marker_path(self, model: str, version: str) -> str:
        return os.path.join(self.checkout_dir(model, version), "complete.json")

    def mark_complete(self, manifest: Manifest) -> None:
        root = self.checkout_path(manifest)
        record = {}
        for f in manifest.files:
            st = os.stat(materialised_path(root, manifest, f.path))
            record[f.path] = [st.st_size, st.st_mtime_ns]
        _write_atomic(self._marker_path(manifest.model, manifest.version), json.dumps(record).encode())

    def is_complete(self, manifest: Manifest) -> bool:
        """True if the checkout is there with every file unchanged since it was verified."""
        try:
            with open(self._marker_path(manifest.model, manifest.version), "rb") as f:
                record = json.load(f)
            root = self.checkout_path(manifest)
            for entry in manifest.files:
                st = os.stat(materialised_path(root, manifest, entry.path))
                if record.get(entry.path) != [st.st_size, st.st_mtime_ns]:
                    return False
            return True
        except (OSError, ValueError):
            return False

    def forget_checkout(self, model: str, version: str) -> None:
        try:
            os.unlink(self._marker_path(model, version))
        except FileNotFoundError:
            pass


class Seeds:
    """digest -> candidate local places holding those bytes; each use is re-verified."""

    def __init__(self) -> None:
        self._where: dict[bytes, list[tuple[str, int, int]]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def add_version(self, manifest: Manifest, root: str) -> None:
        for f in manifest.files:
            path = materialised_path(root, manifest, f.path)
            try:
                if os.path.getsize(path) != f.size:
                    continue
            except OSError:
                continue
            for offset, length, d in f.chunks():
                self._where.setdefault(d, []).append((path, offset, length))

    def lookup(self, digest: bytes, length: int, chunk_hash: ChunkHash = DEFAULT_CHUNK_HASH) -> bytes | None:
        for path, offset, n in self._where.get(digest, ()):
            if n != length:
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read(length)
            except OSError:
                continue
            if len(data) == length and chunk_hash.digest(data) == digest:
                return data
        return None
