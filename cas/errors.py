"""The domain error tree.

Backends raise builtin exceptions (FileNotFoundError, FileExistsError, PermissionError,
ConnectionError, TimeoutError). The store turns the ones that mean something to a user into the
classes below, each with a message that names the object and says what to do. Each class also
subclasses the matching builtin, so ``except FileNotFoundError`` keeps working for callers who
think in files.

Errors carry the objects they are about as fields (``model``, ``version``, ``tag``, ``path``,
``digest``), so callers and tests look at fields, not at the wording; a message that recurs is
built once, here, by its own class.
"""

from __future__ import annotations

FIELDS = ("model", "version", "tag", "path", "digest")


class CasError(Exception):
    """Base of every error cas raises on purpose; the CLI prints its message as one line."""

    model: str | None = None
    version: str | None = None
    tag: str | None = None
    path: str | None = None  # a local path, or a file's path inside a version
    digest: str | None = None  # a chunk's hex digest

    def __init__(self, message: str = "", **fields) -> None:
        super().__init__(message)
        for name, value in fields.items():
            if name not in FIELDS:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            setattr(self, name, value)

    def __reduce__(self):
        # Subclasses build their message from their own arguments; a copy (pickle, multiprocessing)
        # is rebuilt from the message and fields instead of calling __init__ again.
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type, args: tuple, state: dict) -> "CasError":
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class BadName(CasError, ValueError):
    """A model, version or tag name, or a reference, that cas refuses before any I/O."""


class NotFound(CasError, FileNotFoundError):
    """A model, version, tag or chunk that the store does not have."""


class NoSuchModel(NotFound):
    def __init__(self, model: str, store_url: str) -> None:
        super().__init__(f"no model named {model!r} in {store_url}; `cas ls` lists the models", model=model)


class NoSuchVersion(NotFound):
    def __init__(self, model: str, version: str) -> None:
        super().__init__(f"model {model!r} has no version {version!r}; `cas ls {model}` lists its versions",
                         model=model, version=version)


class NoSuchTag(NotFound):
    def __init__(self, model: str, tag: str) -> None:
        super().__init__(f"model {model!r} has no tag {tag!r}; `cas ls {model}` lists its tags", model=model, tag=tag)


class MissingChunk(NotFound):
    def __init__(self, digest: str, where: str) -> None:
        super().__init__(f"chunk {digest} of {where} is missing from the store; run `cas verify` and `cas repair`",
                         digest=digest)


class AlreadyExists(CasError, FileExistsError):
    """A version label that is taken, or a destination that exists (without --force)."""


class VersionExists(AlreadyExists):
    def __init__(self, model: str, version: str, why: str = "already exists and versions are immutable") -> None:
        super().__init__(f"{model}@{version} {why}; choose another version label", model=model, version=version)


class BadManifest(CasError, ValueError):
    """A manifest that is truncated, not msgpack, of an unknown format, or unsafe to materialise."""


class NewerFormat(BadManifest):
    """A manifest in a format this cas does not read: written by a newer cas, not damaged."""


class CorruptChunk(CasError):
    """A stored chunk object that does not decode to the bytes its digest names."""


class SourceChanged(CasError):
    """A local file changed while it was being stored; nothing was published."""


class StoreUnavailable(CasError, ConnectionError):
    """The store could not be reached (namenode down, connection refused, timed out)."""


class StoreFull(CasError, OSError):
    """The store has no space (or quota) left for what a write needed."""

    def __init__(self, store_url: str, what: str, outcome: str, **fields) -> None:
        super().__init__(f"the store {store_url} is full (no space or quota left) during {what}; {outcome}. "
                         "Free space there (`cas gc` deletes chunks no version uses) or use another store", **fields)


class InUse(CasError):
    """An operation refused because something still refers to the object (e.g. a tag on a version)."""


class IntegrityError(CasError):
    """A fetched file whose strong (cryptographic) digest does not match its manifest."""


class StoreMisconfigured(CasError, OSError):
    """The store URL or its credentials name nothing usable (a bucket that does not exist, refused
    credentials, a region mismatch, an endpoint that is not the service, a prefix that may not be
    written, a store without exclusive create). Raised before any chunk is sent."""


class BadSettings(CasError, ValueError):
    """A store settings object that is unreadable, of an unknown format, or written by a newer cas."""


class SettingsConflict(CasError):
    """A client asked for a store setting (e.g. the chunk hash) that disagrees with the store's."""


class StoreExists(AlreadyExists):
    def __init__(self, store_url: str, chunk_hash: str) -> None:
        super().__init__(f"store {store_url} already exists (with {chunk_hash} chunk keys); open it instead of creating it")
