"""Where every object lives under the store root: the one place that decides key layout.

    settings.msgpack                 store-wide settings (chunk hash), written once at creation
    chunks/ab/cd/<hex digest>        chunk objects (32 hex digits with xxh3-128 keys, 64 with blake3-256),
                                     fanned out two levels (65,536 directories) so no HDFS directory
                                     nears its 1,048,576-entry limit
    packs/ab/cd/<hex pack id>        pack objects: small chunk objects back to back (cas.packing); the id
                                     is the chunk hash of the pack's bytes, fanned out like chunks
    manifests/<model>/<version>.msgpack
    manifests/<model>/<version>.removed   tombstone: the label stays taken after `rm`
    refs/<model>/<tag>/<seq:08d>     tag history, one immutable entry per move
    locks/<kind>.<owner>.<seq>       leases of running writers and of gc (see cas.leases)
    tmp/<ms>-<random>                staging: backends write here, then rename/link into place
    trash/<gc owner>+<key, / as +>   chunks a running gc set aside, deleted from here once its lease
                                     held through the move (see cas.maintenance.gc)
    pending/<ms>-<random>            the manifest a writer is about to publish, recorded under its lease
                                     so gc keeps what it names (see cas.intents)
"""

from __future__ import annotations

import time
import uuid

CHUNKS = "chunks"
PACKS = "packs"
MANIFESTS = "manifests"
REFS = "refs"
TMP = "tmp"
TRASH = "trash"
PENDING = "pending"
SETTINGS = "settings.msgpack"

MANIFEST_SUFFIX = ".msgpack"
TOMBSTONE_SUFFIX = ".removed"
TAG_ENTRY_WIDTH = 8


def chunk_key(hex_digest: str) -> str:
    return f"{CHUNKS}/{hex_digest[0:2]}/{hex_digest[2:4]}/{hex_digest}"


def digest_of_chunk_key(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def pack_key(hex_id: str) -> str:
    return f"{PACKS}/{hex_id[0:2]}/{hex_id[2:4]}/{hex_id}"


def id_of_pack_key(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def trash_key(owner: str, key: str) -> str:
    """Where gc ``owner`` sets the object ``key`` aside: one flat directory for every gc, so no run
    leaves an empty directory behind (a NameNode entry each, and a listing for every later gc)."""
    return f"{TRASH}/{owner}+{key.replace('/', '+')}"


def untrashed_key(trashed: str) -> str | None:
    """The chunk or pack key an object under trash/ was set aside from, or None if it is no such thing."""
    parts = trashed.split("/")
    if len(parts) != 2 or parts[0] != TRASH:
        return None
    pieces = parts[1].split("+")[1:]  # the gc's owner first
    key = "/".join(pieces)
    if len(pieces) != 4 or key not in (chunk_key(pieces[3]), pack_key(pieces[3])):
        return None
    return key


def model_dir(model: str) -> str:
    return f"{MANIFESTS}/{model}"


def manifest_key(model: str, version: str) -> str:
    return f"{MANIFESTS}/{model}/{version}{MANIFEST_SUFFIX}"


def tombstone_key(model: str, version: str) -> str:
    return f"{MANIFESTS}/{model}/{version}{TOMBSTONE_SUFFIX}"


def tag_dir(model: str, tag: str) -> str:
    return f"{REFS}/{model}/{tag}"


def tags_dir(model: str) -> str:
    return f"{REFS}/{model}"


def tag_entry_key(model: str, tag: str, seq: int) -> str:
    return f"{REFS}/{model}/{tag}/{seq:0{TAG_ENTRY_WIDTH}d}"

LOCKS = "locks"


def lease_key(kind: str, owner: str, seq: int) -> str:
    """``locks/<kind>.<owner>.<seq>``: one immutable file per heartbeat of a lease."""
    return f"{LOCKS}/{kind}.{owner}.{seq:08d}"


def staging_key() -> str:
    """A fresh staging name. It starts with the creation time in milliseconds so gc can tell a
    crashed writer's leftover (old) from a write in progress (recent) without asking anyone."""
    return f"{TMP}/{int(time.time() * 1000):013d}-{uuid.uuid4().hex}"


def key_age(key: str, now: float | None = None) -> float | None:
    """Seconds since a staging or pending key was made, or None if the name is not one of ours."""
    stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
    if not (stamp.isascii() and stamp.isdigit()):  # isdigit alone takes "²", which int() refuses
        return None
    return (time.time() if now is None else now) - int(stamp) / 1000


def pending_key() -> str:
    """A fresh name for a record of a version being published, stamped with its creation time."""
    return f"{PENDING}/{int(time.time() * 1000):013d}-{uuid.uuid4().hex}"
