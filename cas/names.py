"""Names and references, validated before any I/O.

A name (model, version or tag) is 1 to 128 characters from ``A-Z a-z 0-9 . _ -`` and starts
with a letter or digit. That keeps every name a single safe path component on both HDFS
(which forbids ``:`` and ``.``/``..`` components) and local file systems, and keeps it
readable in a shell.

A reference is ``MODEL`` (its ``latest`` tag), ``MODEL@VERSION`` or ``MODEL:TAG``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadName

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
LATEST = "latest"


def check_name(name: object, kind: str) -> str:
    """Return ``name`` if it is a valid model/version/tag name, else raise BadName naming it."""
    if not isinstance(name, str) or not name:
        raise BadName(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise BadName(f"{kind} name {name[:40]!r}... is {len(name)} characters; the limit is {MAX_NAME_LENGTH}")
    if not _NAME.match(name):
        raise BadName(
            f"{kind} name {name!r} is not allowed: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def is_valid_name(name: object) -> bool:
    """True if ``name`` would pass ``check_name`` (for filtering names listed from a store)."""
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH and bool(_NAME.match(name))


def check_stored_name(name: object, kind: str, where: str) -> str:
    """Return ``name``, read from the store at ``where``, if it is as valid as a user's name.

    A store's contents are input like any other: a tag target or manifest field such as
    ``../../etc`` must never become a path. BadName says which object holds it and what to do.
    """
    if is_valid_name(name):
        return name
    shown = repr(name)[:80]
    raise BadName(f"{where} names {kind} {shown}, which is not a valid {kind} name; the store is damaged "
                  "or was written by someone hostile: run `cas verify` and remove that object")


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``version`` and ``tag`` is set."""

    model: str
    version: str | None = None
    tag: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.model}@{self.version}"
        return f"{self.model}:{self.tag}"


def parse_ref(text: str) -> Ref:
    """Parse ``MODEL``, ``MODEL@VERSION`` or ``MODEL:TAG``; raise BadName on anything else."""
    if not isinstance(text, str) or not text:
        raise BadName(f"reference must be MODEL, MODEL@VERSION or MODEL:TAG, got {text!r}")
    if "@" in text and ":" in text:
        raise BadName(f"reference {text!r} has both '@' and ':'; use MODEL@VERSION or MODEL:TAG")
    if "@" in text:
        model, _, version = text.partition("@")
        return Ref(check_name(model, "model"), version=check_name(version, "version"))
    if ":" in text:
        model, _, tag = text.partition(":")
        return Ref(check_name(model, "model"), tag=check_name(tag, "tag"))
    return Ref(check_name(text, "model"), tag=LATEST)
