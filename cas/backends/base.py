"""The Backend contract: the handful of methods every store location implements.

Keys are relative, '/'-separated strings under the store root (``chunks/ab/cd/<hex>``); the
store's layout module decides them, backends never interpret them. Everything else (chunking,
versions, tags, dedup, parallelism) lives above this line, so a new backend is a subclass of
``Backend`` implementing its abstract methods, and a fixture in the conformance suite
(``cas.testing.conformance``).

Errors are builtins: FileNotFoundError, FileExistsError, PermissionError, and ConnectionError /
TimeoutError when the store cannot be reached. Messages name the key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from urllib.parse import parse_qsl
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # bytes, bytearray, memoryview, mmap: anything memoryview takes
    from typing_extensions import Buffer


class StoredObject(NamedTuple):
    """One object found by ``walk``."""

    key: str
    size: int  # bytes
    mtime: float  # when it was written, seconds since the epoch (the store's clock)


class Backend(ABC):
    """The contract. Backends subclass it: the abstract methods are what each must implement,
    ``read_into`` is built on ``read`` and overridden where a backend has a faster path.

    After ``close`` every method except ``close`` raises ValueError naming the store, at once:
    a closed backend never reconnects behind its owner's back, and never waits on a network.
    """

    url: str
    """Where this backend points, without credentials; used in messages and cache keys."""

    max_workers: int
    """How many threads may usefully call this backend at once (its connection limit)."""

    @abstractmethod
    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes from ``offset``, at most ``length`` of them (all if None).

        Missing key: FileNotFoundError. A range past the end returns the bytes that exist
        (possibly none), as a Python file would. With ``length`` given, no more than ``length``
        bytes are read from the store or held in memory, however large the object is (callers
        bound every read of untrusted objects this way; see ``read_limited``).

        Every method refuses keys that could leave the store root (``check_key``: ValueError).
        """

    def read_into(self, key: str, buffer: Buffer) -> int:
        """Read the whole object at ``key`` into the start of ``buffer`` (a writable bytes-like
        object the caller reuses); return its length.

        Missing key: FileNotFoundError. An object longer than ``buffer``: BufferError, and
        ``buffer`` is left as it was. This default reads at most ``len(buffer) + 1`` bytes with
        ``read`` and copies them in; backends that can land the bytes in ``buffer`` directly
        (local files, S3 bodies) override it.
        """
        view = memoryview(buffer).cast("B")
        data = self.read(key, 0, len(view) + 1)  # never more than one byte past what fits
        if len(data) > len(view):
            raise BufferError(f"object {key!r} in {self.url} is longer than the {len(view)}-byte buffer")
        view[: len(data)] = data
        return len(data)

    @abstractmethod
    def create(self, key: str, data: Buffer) -> None:
        """Publish ``data`` at ``key`` atomically and exclusively.

        ``data`` is any bytes-like object; it may be a view of a buffer the caller reuses once
        create returns, so a backend that keeps the bytes copies them.

        - On return the object is complete and visible; a concurrent reader sees either
          FileNotFoundError or all of ``data``, never a prefix. It is durable (survives a power
          loss) once ``flush`` has returned.
        - If ``key`` exists: FileExistsError, and the existing object is left unchanged. Of
          several concurrent creators of one key exactly one succeeds (this is the
          compare-and-set that assigns version numbers and tag entries).
        - Interrupted (crash, kill, lost connection): nothing appears at ``key``; leftovers live
          only under ``tmp/``.
        - Missing parent "directories" are created.
        """

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove one object; True if it was there, False if it was already missing."""

    def move(self, src: str, dst: str) -> None:
        """Move the object at ``src`` to ``dst`` (missing parents created); ``src`` is gone after.

        For content-addressed objects only (gc sets chunks aside and puts them back), whose copies
        are interchangeable: if ``dst`` exists already, ``src`` is removed and ``dst`` holds one of
        the two (local and HDFS keep it; S3's copy replaces it). Missing ``src``:
        FileNotFoundError, except that a missing ``src`` with ``dst`` present may count as moved
        (HDFS cannot tell it from a retried rename whose first answer was lost). An interruption
        may leave the object at both keys, never at neither. This default copies through ``read``, ``create`` and ``delete``;
        backends that can rename (local files, HDFS) or copy server-side (S3) override it.
        """
        data = self.read(src)
        try:
            self.create(dst, data)
        except FileExistsError:
            pass
        self.delete(src)

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Names (not keys) of the direct children of ``prefix``, objects and sub-prefixes
        alike, sorted. An empty list when nothing exists under ``prefix``."""

    @abstractmethod
    def walk(self, prefix: str) -> Iterator[StoredObject]:
        """Yield a StoredObject (key, size, mtime) for every object anywhere below ``prefix``, in any
        order. gc uses ``mtime`` to leave young objects alone."""

    @abstractmethod
    def missing(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` that have no object: the one bulk existence question a put asks."""

    @abstractmethod
    def flush(self) -> None:
        """Make every object created so far durable: the barrier the store puts between a put's
        chunks and its manifest. Backends whose create is durable already do nothing."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and threads; the backend is unusable afterwards (see the class
        docstring). Closing twice is harmless."""


def query_options(query: str, known, *, what: str, credential_words, credential_hint: str) -> list[tuple[str, str]]:
    """The (name, text) pairs of a store URL's query string, each name given once and known.

    A name not in ``known`` is refused naming what is understood, and one that looks like a
    credential (contains one of ``credential_words``) with ``credential_hint``, so a secret pasted
    into a URL is never taken, stored or echoed. ``what`` names the URL in messages (no values).
    """
    seen: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if any(name == n for n, _ in seen):
            raise ValueError(f"{what} gives {name!r} twice")
        if name not in known:
            if any(word in name.lower() for word in credential_words):
                raise ValueError(f"{what} has a credential-like parameter {name!r}; {credential_hint}")
            raise ValueError(f"{what} has unknown parameter {name!r}; understood: {', '.join(known)}")
        seen.append((name, value))
    return seen


def closed_error(url: str) -> ValueError:
    """What every operation of a closed backend raises (see ``Backend``)."""
    return ValueError(f"store {url} is closed; open it again")


def check_key(key: object) -> str:
    """Return ``key`` if it is a relative key that stays under the store root, else ValueError.

    Refused: non-strings, absolute keys, empty, ``.`` or ``..`` components, backslashes and NUL.
    The empty key (the root itself) is allowed for ``list``/``walk``. Every backend calls this, so
    a name read from a damaged store can never reach outside it.
    """
    if not isinstance(key, str):
        raise TypeError(f"store key must be a string, got {key!r}")
    if key == "":
        return key
    if key.startswith("/") or "\\" in key or "\0" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"store key {key[:200]!r} is absolute or has an empty, '.' or '..' component; "
                         "cas refuses keys that could leave the store root")
    return key


class ObjectTooLarge(ValueError):
    """An object larger than the format allows for its kind (read by ``read_limited``)."""


def read_limited(backend, key: str, max_bytes: int, what: str) -> bytes:
    """The whole object at ``key``, reading at most ``max_bytes`` + 1 bytes of it.

    ObjectTooLarge (naming ``what``, the key and the store) if it is longer than ``max_bytes``:
    small objects (manifests, tag entries, leases) are never read past what the format allows,
    however large a damaged or hostile store makes them.
    """
    data = backend.read(key, 0, max_bytes + 1)
    if len(data) > max_bytes:
        raise ObjectTooLarge(f"{what} at {key!r} in {backend.url} is larger than the {max_bytes}-byte limit "
                             "for such objects; the store is damaged: run `cas verify` and remove that object")
    return data


def read_into(backend: Backend, key: str, buffer: Buffer) -> memoryview:
    """The whole object at ``key``, read into ``buffer``: a view of the bytes it filled.

    BufferError (``buffer`` unchanged) if the object is longer than ``buffer``.
    """
    return memoryview(buffer)[: backend.read_into(key, buffer)]
