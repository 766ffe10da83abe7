"""The domain error tree.

Backends raise builtin exceptions (FileNotFoundError, FileExistsError, PermissionError,
ConnectionError, TimeoutError). The store turns the ones that mean something to a user into the
classes below, each with a message that names the object and says what to do. Each class also
subclasses the matching builtin, so ``except FileNotFoundError`` keeps working for callers who
think in files.
"""

from __future__ import annotations


class CasError(Exception):
    """Base of every error cas raises on purpose; the CLI prints its message as one line."""


class BadName(CasError, ValueError):
    """A model, version or tag name, or a reference, that cas refuses before any I/O."""


class NotFound(CasError, FileNotFoundError):
    """A model, version, tag or chunk that the store does not have."""


class AlreadyExists(CasError, FileExistsError):
    """A version label that is taken, or a destination that exists (without --force)."""


class BadManifest(CasError, ValueError):
    """A manifest that is truncated, not msgpack, of an unknown format, or unsafe to materialise."""


class CorruptChunk(CasError):
    """A stored chunk object that does not decode to the bytes its digest names."""


class SourceChanged(CasError):
    """A local file changed while it was being stored; nothing was published."""


class StoreUnavailable(CasError, ConnectionError):
    """The store could not be reached (namenode down, connection refused, timed out)."""


class InUse(CasError):
    """An operation refused because something still refers to the object (e.g. a tag on a version)."""


class IntegrityError(CasError):
    """A fetched file whose strong (cryptographic) digest does not match its manifest."""
