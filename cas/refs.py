"""Tags: movable names for versions, with their whole history kept.

A tag is a directory of immutable, numbered entries (``refs/<model>/<tag>/00000001`` ...). The
newest entry is the tag's state. Moving a tag creates the next entry with the backend's exclusive
``create``, so two writers racing to move one tag both land, one after the other, and neither
overwrites the other. Each entry records ``parent``: the entry that was in effect before it, so
``rollback`` walks back along real history (v3 -> v2 -> v1), never toggling between two targets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgpack

from .backends.base import read_limited
from .errors import CasError, NoSuchTag
from .layout import TAG_ENTRY_WIDTH, tag_dir, tag_entry_key, tags_dir
from .names import check_stored_name, is_valid_name

MAX_RACE_RETRIES = 100
MAX_TAG_ENTRY_BYTES = 4096  # an entry is ~60 bytes; a damaged or hostile one is never read past this


@dataclass(frozen=True)
class TagEntry:
    seq: int
    target: str | None  # a version, or None once the tag was removed
    parent: int  # seq of the entry in effect before this one; 0 = none
    op: str  # "set", "rollback" or "untag"
    time: float


def _read_entry(backend, model: str, tag: str, seq: int) -> TagEntry:
    where = f"{model}:{tag}#{seq}"
    key = tag_entry_key(model, tag, seq)
    try:
        data = read_limited(backend, key, MAX_TAG_ENTRY_BYTES, f"tag entry {where}")
        doc = msgpack.unpackb(data, raw=False)
        entry = TagEntry(seq, doc["target"], int(doc["parent"]), str(doc["op"]), float(doc["time"]))
    except (FileNotFoundError, ConnectionError, TimeoutError):
        raise
    except Exception:
        raise CasError(f"tag entry {where} ({key} in {backend.url}) is corrupt; delete it from the store "
                       "to fall back to the previous entry") from None
    if entry.target is not None:  # a target is used as a path component: as strict as a user's version name
        check_stored_name(entry.target, "version", f"tag entry {where} ({key} in {backend.url})")
    return entry


def _entry_numbers(backend, model: str, tag: str) -> list[int]:
    return sorted(int(n) for n in backend.list(tag_dir(model, tag)) if n.isdigit() and len(n) == TAG_ENTRY_WIDTH)


def history(backend, model: str, tag: str) -> list[TagEntry]:
    """Every entry of a tag, oldest first."""
    return [_read_entry(backend, model, tag, s) for s in _entry_numbers(backend, model, tag)]


def current(backend, model: str, tag: str) -> TagEntry | None:
    """The newest entry of a tag, or None if it never existed."""
    numbers = _entry_numbers(backend, model, tag)
    if not numbers:
        return None
    return _read_entry(backend, model, tag, numbers[-1])


def target(backend, model: str, tag: str) -> str | None:
    entry = current(backend, model, tag)
    return entry.target if entry else None


def tag_names(backend, model: str) -> list[str]:
    """Tags of ``model``; listed names that are not valid tag names (junk in the store) are skipped."""
    return [t for t in backend.list(tags_dir(model)) if is_valid_name(t)]


def _append(backend, model: str, tag: str, make_entry) -> TagEntry | None:
    """Create the next entry; ``make_entry(current_or_None)`` returns (target, parent, op), or None
    to leave the tag as it is (a conditional move whose condition no longer holds)."""
    for _ in range(MAX_RACE_RETRIES):
        now = current(backend, model, tag)
        made = make_entry(now)
        if made is None:
            return None
        target_, parent, op = made
        seq = (now.seq if now else 0) + 1
        entry = TagEntry(seq, target_, parent, op, time.time())
        data = msgpack.packb({"target": target_, "parent": parent, "op": op, "time": entry.time})
        try:
            backend.create(tag_entry_key(model, tag, seq), data)
            return entry
        except FileExistsError:
            continue  # another writer moved the tag first: re-read and go again
    raise CasError(f"tag {model}:{tag} is being moved by too many writers at once; try again")


def set_tag(backend, model: str, tag: str, version: str) -> TagEntry:
    return _append(backend, model, tag, lambda now: (version, now.seq if now else 0, "set"))


def advance_tag(backend, model: str, tag: str, version: str) -> TagEntry | None:
    """Point ``tag`` at ``version``, unless both are numbered and the tag is on a higher number.

    How a put moves ``latest``: puts number their versions in the order they publish them, but
    move the tag afterwards, so of two that overlap the first to publish may move it last; it must
    not take ``latest`` back to the older version. Returns None when the tag was left alone.
    """
    def make(now):
        if now is not None and now.target is not None and _number(now.target) > _number(version) >= 0:
            return None
        return version, now.seq if now else 0, "set"

    return _append(backend, model, tag, make)


def _number(version: str) -> int:
    """A numbered version's number; -1 for a label."""
    return int(version) if version.isascii() and version.isdigit() else -1


def remove_tag(backend, model: str, tag: str) -> TagEntry:
    def make(now):
        if now is None or now.target is None:
            raise NoSuchTag(model, tag)
        return None, now.seq, "untag"

    return _append(backend, model, tag, make)


def move_off(backend, model: str, tag: str, version: str, to: str | None) -> TagEntry | None:
    """Point ``tag`` at ``to`` (None: untag it), only if it still points at ``version``.

    Compare-and-set on the tag's next entry: rm moving ``latest`` off the version it removes
    must not undo a put that moved ``latest`` to its new version meanwhile, nor untag ``prod``
    that someone just moved elsewhere. Returns the new entry, or None if the tag had moved.
    """
    def make(now):
        if now is None or now.target != version:
            return None
        return to, now.seq, "set" if to is not None else "untag"

    return _append(backend, model, tag, make)


def _earlier(entries: dict[int, TagEntry], entry: TagEntry, model: str, skip: str | None, exists) -> TagEntry | None:
    """The newest entry before ``entry`` (along ``parent``) whose target still exists and is not
    ``skip``: no removed version, nor "untagged"; None if there is none. A damaged history whose
    parents loop ends the walk."""
    before, seen = entries.get(entry.parent), set()
    while before is not None and (before.target is None or before.target == skip or not exists(model, before.target)):
        if before.seq in seen:
            return None
        seen.add(before.seq)
        before = entries.get(before.parent)
    return before


def previous_target(backend, model: str, tag: str, version: str, *, exists) -> str | None:
    """The newest earlier target of ``tag`` other than ``version`` that still exists, or None."""
    entries = {e.seq: e for e in history(backend, model, tag)}
    now = max(entries.values(), key=lambda e: e.seq, default=None)
    before = _earlier(entries, now, model, version, exists) if now else None
    return before.target if before else None


def rollback_tag(backend, model: str, tag: str, *, exists=lambda model, version: True) -> TagEntry:
    """Point the tag at what it pointed to before its current target, skipping removed versions
    (``exists(model, version)`` says which are still there)."""
    entries = {e.seq: e for e in history(backend, model, tag)}

    def make(now):
        if now is None:
            raise NoSuchTag(model, tag)
        if now.seq not in entries:  # moved since we read the history
            entries.update({e.seq: e for e in history(backend, model, tag)})
        # the current target is no rollback (rm of the latest version moves latest back one:
        # rolling back must go further), nor "untagged" (an rm of a model's only version)
        before = _earlier(entries, now, model, now.target, exists)
        if before is None:
            raise CasError(f"tag {model}:{tag} has no earlier target to roll back to (that still exists)")
        return before.target, before.parent, "rollback"

    return _append(backend, model, tag, make)
