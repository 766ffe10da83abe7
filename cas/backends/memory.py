"""An in-process backend for tests and experiments: a dict behind a lock.

``open_backend("memory://NAME")`` gives every caller its own handle on one shared dict per NAME, so
closing one handle (a Store closing its backend) leaves the others, and the objects, alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from .base import Backend, StoredObject, check_key, closed_error


class MemoryBackend(Backend):
    def __init__(self, name: str = "", *, max_workers: int = 8, shares: MemoryBackend | None = None) -> None:
        """A new, empty store; or, with ``shares``, another handle on that backend's objects."""
        self.url = f"memory://{name}"
        self.max_workers = max_workers
        self.objects: dict[str, bytes] = {} if shares is None else shares.objects
        self.mtimes: dict[str, float] = {} if shares is None else shares.mtimes
        self._lock = threading.Lock() if shares is None else shares._lock
        self._closed = False

    def _check(self, key: str) -> str:
        if self._closed:
            raise closed_error(self.url)
        return check_key(key)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self._check(key)
        try:
            data = self.objects[key]
        except KeyError:
            raise FileNotFoundError(2, "no such object", key) from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def read_into(self, key: str, buffer) -> int:
        self._check(key)
        try:
            data = self.objects[key]
        except KeyError:
            raise FileNotFoundError(2, "no such object", key) from None
        view = memoryview(buffer).cast("B")
        if len(data) > len(view):
            raise BufferError(f"object {key!r} is {len(data)} bytes, more than the {len(view)}-byte buffer")
        view[: len(data)] = data  # one copy, straight from the stored bytes
        return len(data)

    def create(self, key: str, data: bytes) -> None:
        self._check(key)
        with self._lock:
            if key in self.objects:
                raise FileExistsError(17, "object already exists", key)
            self.objects[key] = bytes(data)
            self.mtimes[key] = time.time()

    def delete(self, key: str) -> bool:
        self._check(key)
        with self._lock:
            self.mtimes.pop(key, None)
            return self.objects.pop(key, None) is not None

    def move(self, src: str, dst: str) -> None:
        self._check(src)
        self._check(dst)
        with self._lock:
            if src not in self.objects:
                raise FileNotFoundError(2, "no such object", src)
            data, mtime = self.objects.pop(src), self.mtimes.pop(src, time.time())
            if dst not in self.objects:
                self.objects[dst], self.mtimes[dst] = data, mtime

    def list(self, prefix: str) -> list[str]:
        self._check(prefix)
        start = prefix.rstrip("/") + "/"
        with self._lock:
            keys = [k for k in self.objects if k.startswith(start)]
        return sorted({k[len(start):].split("/", 1)[0] for k in keys})

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        self._check(prefix)
        start = prefix.rstrip("/") + "/"
        with self._lock:
            items = [StoredObject(k, len(v), self.mtimes.get(k, 0.0)) for k, v in self.objects.items()
                     if k.startswith(start)]
        yield from items

    def missing(self, keys: Iterable[str]) -> set[str]:
        self._check("")
        with self._lock:
            return {k for k in keys if k not in self.objects}

    def flush(self) -> None:
        self._check("")  # nothing outlives the process anyway

    def close(self) -> None:
        self._closed = True
