"""An in-process backend for tests and experiments: a dict behind a lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from .base import Backend, StoredObject, check_key


class MemoryBackend(Backend):
    def __init__(self, name: str = "", *, max_workers: int = 8) -> None:
        self.url = f"memory://{name}"
        self.max_workers = max_workers
        self.objects: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}
        self._lock = threading.Lock()

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        check_key(key)
        try:
            data = self.objects[key]
        except KeyError:
            raise FileNotFoundError(2, "no such object", key) from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def read_into(self, key: str, buffer) -> int:
        check_key(key)
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
        check_key(key)
        with self._lock:
            if key in self.objects:
                raise FileExistsError(17, "object already exists", key)
            self.objects[key] = bytes(data)
            self.mtimes[key] = time.time()

    def delete(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            self.mtimes.pop(key, None)
            return self.objects.pop(key, None) is not None

    def list(self, prefix: str) -> list[str]:
        check_key(prefix)
        start = prefix.rstrip("/") + "/"
        with self._lock:
            keys = [k for k in self.objects if k.startswith(start)]
        return sorted({k[len(start):].split("/", 1)[0] for k in keys})

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        check_key(prefix)
        start = prefix.rstrip("/") + "/"
        with self._lock:
            items = [StoredObject(k, len(v), self.mtimes.get(k, 0.0)) for k, v in self.objects.items()
                     if k.startswith(start)]
        yield from items

    def missing(self, keys: Iterable[str]) -> set[str]:
        with self._lock:
            return {k for k in keys if k not in self.objects}

    def flush(self) -> None:
        pass  # nothing outlives the process anyway

    def close(self) -> None:
        pass
