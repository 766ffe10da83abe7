"""The emulated HDFS namespace: inodes and leases in memory, file bytes in a directory on disk.

Every operation runs under one lock, like FSNamesystem's write lock, so each is atomic against
the others. File contents live in ``<data_dir>/<fileId>`` and are read and written
outside the lock; only the inode's visible length is updated under it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
import threading
import time
from dataclasses import dataclass, field

from .errors import RemoteError, access_denied, not_found

DIR, FILE = "DIRECTORY", "FILE"
READ, WRITE, EXECUTE = 4, 2, 1
_ACTION_NAMES = {1: "EXECUTE", 2: "WRITE", 3: "WRITE_EXECUTE", 4: "READ", 5: "READ_EXECUTE",
                 6: "READ_WRITE", 7: "ALL"}
DEFAULT_BLOCKSIZE = 134217728
DEFAULT_REPLICATION = 3
SUPERGROUP = "supergroup"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class Inode:
    kind: str
    id: int
    owner: str
    group: str
    mode: int
    mtime: int = field(default_factory=now_ms)
    atime: int = 0
    replication: int = 0
    blocksize: int = 0
    length: int = 0
    children: dict[str, Inode] | None = None
    writer: str | None = None  # lease holder while the file is being written
    alive: bool = True  # False once deleted or overwritten; its writer then fails at close


@dataclass
class Resolved:
    """A path resolved as far as it exists: ``chain[k]`` is the inode of ``prefix(k)``."""

    path: str
    parts: list[str]
    chain: list[Inode]

    @property
    def last(self) -> Inode | None:
        return self.chain[-1] if len(self.chain) == len(self.parts) + 1 else None

    @property
    def parent(self) -> Inode | None:
        return self.chain[len(self.parts) - 1] if self.parts and len(self.chain) >= len(self.parts) else None

    def prefix(self, k: int) -> str:
        return "/" + "/".join(self.parts[:k])


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def mode_string(inode: Inode) -> str:
    """``drwxr-xr-x`` as FSPermissionChecker prints it (``t``/``T`` for the sticky bit)."""
    chars = ["d" if inode.kind == DIR else "-"]
    for shift in (6, 3, 0):
        bits = inode.mode >> shift
        chars += ["r" if bits & 4 else "-", "w" if bits & 2 else "-", "x" if bits & 1 else "-"]
    if inode.mode & 0o1000:
        chars[-1] = "t" if chars[-1] == "x" else "T"
    return "".join(chars)


class Namespace:
    """Directory tree, permissions and file storage of one emulated cluster."""

    def __init__(self, data_dir: str, *, superuser: str = "hdfs", permissions: bool = True,
                 groups: dict[str, list[str]] | None = None):
        self.data_dir = data_dir
        self.superuser = superuser
        self.permissions = permissions
        self.groups = groups or {}
        self.lock = threading.RLock()
        self.max_directory_items = 1048576  # dfs.namenode.fs-limits.max-directory-items
        self.max_component_length = 255  # dfs.namenode.fs-limits.max-component-length
        self.min_block_size = 1048576  # dfs.namenode.fs-limits.min-block-size
        self._ids = itertools.count(16385)  # INodeId.ROOT_INODE_ID
        self._clients = itertools.count(1)
        self.root = self._new_dir(superuser, SUPERGROUP, 0o755)

    # -- users and permissions ------------------------------------------------------------------

    def user_groups(self, user: str) -> list[str]:
        """A user's groups: configured, else just a group named after the user."""
        return self.groups.get(user, [user])

    def is_super(self, user: str) -> bool:
        return user == self.superuser or SUPERGROUP in self.user_groups(user)

    def _check(self, user: str, path: str, inode: Inode | None, access: int) -> None:
        """Raise Hadoop's AccessControlException unless ``user`` has ``access`` on ``inode``."""
        if inode is None or not self.permissions or self.is_super(user):
            return
        if user == inode.owner:
            granted = inode.mode >> 6
        elif inode.group in self.user_groups(user):
            granted = inode.mode >> 3
        else:
            granted = inode.mode
        if granted & access != access:
            raise access_denied(f'Permission denied: user={user}, access={_ACTION_NAMES[access]}, '
                                f'inode="{path}":{inode.owner}:{inode.group}:{mode_string(inode)}')

    def _check_owner(self, user: str, path: str, inode: Inode) -> None:
        if self.permissions and user != inode.owner and not self.is_super(user):
            raise access_denied(f"Permission denied. user={user} is not the owner of inode={path}")

    def _check_ancestor(self, user: str, res: Resolved, access: int) -> None:
        """Check the nearest existing ancestor of the target, as checkAncestorAccess does."""
        k = min(len(res.chain), len(res.parts)) - 1
        self._check(user, res.prefix(k), res.chain[k], access)

    def _check_subtree(self, user: str, path: str, inode: Inode, access: int) -> None:
        if inode.kind != DIR:
            return
        self._check(user, path, inode, access)
        for name, child in inode.children.items():
            self._check_subtree(user, path.rstrip("/") + "/" + name, child, access)

    def resolve(self, path: str, user: str, *, creating: bool = False) -> Resolved:
        """Walk ``path`` as far as it exists, checking EXECUTE on every directory passed through.

        Passing *through* a file is ParentNotDirectoryException for creating ops (CREATE, MKDIRS,
        rename destination) and AccessControlException for all others (3.x resolvePath).
        """
        res = Resolved(path, split(path), [self.root])
        for k, name in enumerate(res.parts):
            node = res.chain[-1]
            if node.kind != DIR:
                message = f"{res.prefix(k)} (is not a directory)"
                raise RemoteError("ParentNotDirectoryException", message) if creating else access_denied(message)
            self._check(user, res.prefix(k), node, EXECUTE)
            child = node.children.get(name)
            if child is None:
                break
            res.chain.append(child)
        return res

    # -- inode bookkeeping ----------------------------------------------------------------------

    def _new_dir(self, owner: str, group: str, mode: int) -> Inode:
        return Inode(DIR, next(self._ids), owner, group, mode, children={})

    def blob(self, inode: Inode) -> str:
        return os.path.join(self.data_dir, str(inode.id))

    def _add_child(self, res: Resolved, k: int, inode: Inode) -> None:
        """Link ``inode`` as component ``k`` of ``res``, enforcing the fs-limits."""
        parent, name = res.chain[k], res.parts[k]
        if len(name.encode()) > self.max_component_length:
            raise RemoteError("PathComponentTooLongException",
                              f"The maximum path component name limit of {name} in directory {res.prefix(k)} "
                              f"is exceeded: limit={self.max_component_length} length={len(name.encode())}")
        if len(parent.children) >= self.max_directory_items:
            raise RemoteError("MaxDirectoryItemsExceededException",
                              f"The directory item limit of {res.prefix(k)} is exceeded: "
                              f"limit={self.max_directory_items} items={len(parent.children)}")
        parent.children[name] = inode
        parent.mtime = now_ms()
        res.chain.append(inode)

    def _make_parents(self, res: Resolved, owner: str, leaf_mode: int | None) -> None:
        """Create the missing directories of ``res`` (all but the last component).

        Intermediate directories get ``leaf_mode`` (or the last existing ancestor's mode) plus
        u+wx, like FSDirMkdirOp; the group comes from the parent (BSD rule).
        """
        while len(res.chain) < len(res.parts):
            parent = res.chain[-1]
            mode = (parent.mode if leaf_mode is None else leaf_mode) | 0o300
            self._add_child(res, len(res.chain) - 1, self._new_dir(owner, parent.group, mode & 0o1777))

    def _unlink(self, res: Resolved) -> Inode:
        """Remove the last inode of ``res`` from its parent and release its subtree's storage."""
        parent, victim = res.parent, res.last
        del parent.children[res.parts[-1]]
        parent.mtime = now_ms()
        self._release(victim)
        return victim

    def _release(self, inode: Inode) -> None:
        inode.alive = False
        if inode.kind == DIR:
            for child in inode.children.values():
                self._release(child)
        else:
            try:
                os.unlink(self.blob(inode))
            except FileNotFoundError:
                pass

    def file_status(self, inode: Inode, suffix: str = "") -> dict:
        """The FileStatus JSON object of Hadoop 3.x (webhdfs.md §1.3)."""
        is_dir = inode.kind == DIR
        return {
            "accessTime": inode.atime, "blockSize": inode.blocksize,
            "childrenNum": len(inode.children) if is_dir else 0, "fileId": inode.id,
            "group": inode.group, "length": inode.length, "modificationTime": inode.mtime,
            "owner": inode.owner, "pathSuffix": suffix, "permission": format(inode.mode, "o"),
            "replication": inode.replication, "storagePolicy": 0, "type": inode.kind,
        }

    # -- metadata operations (NameNode) ---------------------------------------------------------

    def get_status(self, path: str, user: str) -> dict:
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"File does not exist: {path}")
            return self.file_status(inode)

    def list_status(self, path: str, user: str) -> list[dict]:
        """All children sorted by name bytes; a file lists as itself with an empty suffix."""
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"File {path} does not exist.")
            if inode.kind == FILE:
                return [self.file_status(inode)]
            self._check(user, path, inode, READ | EXECUTE)
            names = sorted(inode.children, key=str.encode)
            return [self.file_status(inode.children[n], n) for n in names]

    def content_summary(self, path: str, user: str) -> dict:
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"File does not exist: {path}")
            self._check_subtree(user, path, inode, READ | EXECUTE)
            counts = {"directoryCount": 0, "fileCount": 0, "length": 0, "spaceConsumed": 0}
            self._summarise(inode, counts)
            return {**counts, "ecPolicy": "", "quota": -1, "spaceQuota": -1, "typeQuota": {}}

    def _summarise(self, inode: Inode, counts: dict) -> None:
        if inode.kind == FILE:
            counts["fileCount"] += 1
            counts["length"] += inode.length
            counts["spaceConsumed"] += inode.length * inode.replication
            return
        counts["directoryCount"] += 1
        for child in inode.children.values():
            self._summarise(child, counts)

    def mkdirs(self, path: str, user: str, mode: int) -> None:
        """FSDirMkdirOp: true for new and existing directories, parents created."""
        with self.lock:
            res = self.resolve(path, user, creating=True)
            last = res.last
            if last is not None:
                if last.kind == FILE:
                    raise RemoteError("FileAlreadyExistsException", f"Path is not a directory: {path}")
                return
            self._check_ancestor(user, res, WRITE)
            self._make_parents(res, user, mode)
            self._add_child(res, len(res.parts) - 1, self._new_dir(user, res.chain[-1].group, mode))

    def delete(self, path: str, user: str, recursive: bool) -> bool:
        with self.lock:
            res = self.resolve(path, user)
            inode = res.last
            if inode is not None and inode.kind == DIR and inode.children and not recursive:
                raise RemoteError("PathIsNotEmptyDirectoryException",
                                  f"`{path} is non empty': Directory is not empty")
            if inode is None or not res.parts:
                return False  # missing, or "/": never deleted
            self._check(user, res.prefix(len(res.parts) - 1), res.parent, WRITE)
            if inode.children:
                self._check_subtree(user, path, inode, READ | WRITE | EXECUTE)
            self._unlink(res)
            return True

    def rename(self, src: str, dst: str, user: str) -> bool:
        """The old ``ClientProtocol.rename``: false (no exception) for every refusal of §1.5."""
        with self.lock:
            sres = self.resolve(src, user)
            dres = self.resolve(dst, user, creating=True)
            if dres.last is not None and dres.last.kind == DIR and sres.parts:
                dst = dst.rstrip("/") + "/" + sres.parts[-1]  # moving into an existing directory
                dres = self.resolve(dst, user, creating=True)
            if sres.parent is not None:
                self._check(user, sres.prefix(len(sres.parts) - 1), sres.parent, WRITE)
            if dres.parts:
                self._check_ancestor(user, dres, WRITE)
            source = sres.last
            if source is None or not sres.parts:
                return False
            if dst == src:
                return True
            if dst.startswith(src.rstrip("/") + "/") or dres.last is not None or dres.parent is None:
                return False
            del sres.parent.children[sres.parts[-1]]
            try:
                self._add_child(dres, len(dres.parts) - 1, source)
            except RemoteError:
                sres.parent.children[sres.parts[-1]] = source  # all or nothing
                raise
            sres.parent.mtime = now_ms()
            return True

    def set_permission(self, path: str, user: str, mode: int) -> None:
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"Directory/File does not exist {path}")
            self._check_owner(user, path, inode)
            inode.mode = mode

    def set_owner(self, path: str, user: str, owner: str | None, group: str | None) -> None:
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"File does not exist: {path}")
            self._check_owner(user, path, inode)
            if self.permissions and not self.is_super(user):
                if owner is not None and owner != inode.owner:
                    raise access_denied("User " + user + " is not a super user (non-super user cannot change owner).")
                if group is not None and group not in self.user_groups(user):
                    raise access_denied(f"User {user} does not belong to {group}")
            inode.owner = owner or inode.owner
            inode.group = group or inode.group

    def set_replication(self, path: str, user: str, replication: int) -> bool:
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None or inode.kind != FILE:
                return False
            self._check(user, path, inode, WRITE)
            inode.replication = replication
            return True

    def set_times(self, path: str, user: str, mtime: int | None, atime: int | None) -> None:
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"File/Directory {path} does not exist.")
            self._check(user, path, inode, WRITE)
            if mtime is not None and mtime >= 0:
                inode.mtime = mtime
            if atime is not None and atime >= 0:
                inode.atime = atime

    def check_file_exists(self, path: str, user: str) -> Inode:
        """NameNode step 1 of OPEN/APPEND/GETFILECHECKSUM: ``getFileInfo`` (directories pass)."""
        with self.lock:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"File {path} not found.")
            return inode

    # -- data operations (DataNode) -------------------------------------------------------------

    def _readable_file(self, path: str, user: str) -> Inode:
        """What the DataNode's DFSClient gets from getBlockLocations (errors carry a trace)."""
        try:
            inode = self.resolve(path, user).last
            if inode is None:
                raise not_found(f"File does not exist: {path}")
            if inode.kind != FILE:
                raise not_found(f"Path is not a file: {path}")
            self._check(user, path, inode, READ)
        except RemoteError as e:
            raise e.via_rpc() from None
        return inode

    def open_read(self, path: str, user: str, offset: int, length: int | None):
        """Open ``path`` for a ranged read: ``(file object positioned at offset, byte count)``.

        The count is taken from the visible length at this moment, as the DataNode does; the file
        object is opened under the lock so a concurrent delete cannot pull it away first.
        """
        with self.lock:
            inode = self._readable_file(path, user)
            visible = inode.length
            if offset > visible or (offset == visible and offset > 0):
                raise RemoteError("EOFException", "Cannot seek after EOF")
            count = visible - offset if length is None else min(visible - offset, length)
            f = open(self.blob(inode), "rb")
        f.seek(offset)
        return f, count

    def checksum(self, path: str, user: str) -> dict:
        """A deterministic MD5-of-MD5s with the shape of HDFS's MD5MD5CRC32C checksum."""
        with self.lock:
            inode = self._readable_file(path, user)
            length, blocksize = inode.length, inode.blocksize
            f = open(self.blob(inode), "rb")
        with f:
            block_md5s = b"".join(hashlib.md5(f.read(blocksize)).digest()
                                  for _ in range(max(1, -(-length // blocksize))))
        crc_per_block = blocksize // 512 if length > blocksize else 0
        raw = struct.pack(">iq", 512, crc_per_block) + hashlib.md5(block_md5s).digest()
        return {"algorithm": f"MD5-of-{crc_per_block}MD5-of-512CRC32C", "bytes": raw.hex(), "length": len(raw)}

    def start_create(self, path: str, user: str, client: str, *, overwrite: bool, mode: int,
                     replication: int, blocksize: int, createparent: bool) -> Upload:
        """``startFile``: every check CREATE makes before the DataNode reads any body byte."""
        with self.lock:
            try:
                return self._start_create(path, user, client, overwrite, mode, replication, blocksize, createparent)
            except RemoteError as e:
                raise e.via_rpc() from None

    def _start_create(self, path, user, client, overwrite, mode, replication, blocksize, createparent):
        if blocksize < self.min_block_size:
            raise RemoteError("IOException", "Specified block size is less than configured minimum value "
                                             f"(dfs.namenode.fs-limits.min-block-size): {blocksize} < {self.min_block_size}")
        res = self.resolve(path, user, creating=True)
        self._check_ancestor(user, res, WRITE)
        existing = res.last
        if existing is not None and existing.kind == DIR:
            raise RemoteError("FileAlreadyExistsException", f"{path} already exists as a directory")
        if existing is not None and overwrite:
            self._check(user, path, existing, WRITE)
        if existing is None and res.parent is None and not createparent:
            raise not_found(f"Parent directory doesn't exist: {res.prefix(len(res.chain))}")
        holder = f"DFSClient_NONMAPREDUCE_{next(self._clients)}_1"
        if existing is not None and not overwrite:
            if existing.writer is not None:
                raise RemoteError("AlreadyBeingCreatedException",
                                  f"Failed to CREATE_FILE {path} for {holder} on {client} because this file "
                                  f"lease is currently owned by {existing.writer} on {client}")
            raise RemoteError("FileAlreadyExistsException", f"{path} for client {client} already exists")
        if blocksize % 512:
            raise RemoteError("HadoopIllegalArgumentException", "Invalid values: dfs.bytes-per-checksum (=512) "
                                                                f"must divide block size (={blocksize}).")
        if existing is not None:
            self._unlink(res)
            res.chain.pop()
        self._make_parents(res, user, None)
        inode = Inode(FILE, next(self._ids), user, res.chain[-1].group, mode, atime=now_ms(),
                      replication=replication, blocksize=blocksize, writer=holder)
        self._add_child(res, len(res.parts) - 1, inode)
        return Upload(self, path, inode, open(self.blob(inode), "wb", buffering=0), None)

    def start_append(self, path: str, user: str, client: str) -> Upload:
        with self.lock:
            try:
                res = self.resolve(path, user)
                inode = res.last
                self._check(user, path, inode, WRITE)
                if inode is not None and inode.kind == DIR:
                    raise RemoteError("FileAlreadyExistsException", f"Cannot append to directory {path}")
                if inode is None:
                    raise not_found(f"Failed to append to non-existent file {path} for client {client}")
                holder = f"DFSClient_NONMAPREDUCE_{next(self._clients)}_1"
                if inode.writer is not None:
                    raise RemoteError("AlreadyBeingCreatedException",
                                      f"Failed to APPEND_FILE {path} for {holder} on {client} because this file "
                                      f"lease is currently owned by {inode.writer} on {client}")
            except RemoteError as e:
                raise e.via_rpc() from None
            inode.writer = holder
            return Upload(self, path, inode, open(self.blob(inode), "ab", buffering=0), inode.length)

    # -- raw access (bypasses HTTP and permissions) ---------------------------------------------

    def raw_read(self, path: str) -> bytes | None:
        with self.lock:
            inode = self.resolve(path, self.superuser).last if self._walkable(path) else None
            if inode is None or inode.kind != FILE:
                return None
            length, f = inode.length, open(self.blob(inode), "rb")
        with f:
            return f.read(length)

    def raw_write(self, path: str, data: bytes, owner: str | None = None) -> None:
        """Store ``data`` as a closed file, replacing a file there; parents are created.

        The owner defaults to the owner of the nearest existing ancestor, so the store's user
        can manage what a test planted under its root.
        """
        with self.lock:
            res = self.resolve(path, self.superuser, creating=True)
            if res.last is not None and res.last.kind == DIR:
                raise IsADirectoryError(path)
            if res.last is not None:
                self._unlink(res)
                res.chain.pop()
            owner = owner or res.chain[-1].owner
            self._make_parents(res, owner, None)
            inode = Inode(FILE, next(self._ids), owner, res.chain[-1].group, 0o644, atime=now_ms(),
                          replication=DEFAULT_REPLICATION, blocksize=DEFAULT_BLOCKSIZE, length=len(data))
            with open(self.blob(inode), "wb") as f:
                f.write(data)
            self._add_child(res, len(res.parts) - 1, inode)

    def raw_delete(self, path: str) -> bool:
        with self.lock:
            res = self.resolve(path, self.superuser) if self._walkable(path) else None
            if res is None or res.last is None or not res.parts:
                return False
            self._unlink(res)
            return True

    def raw_mkdirs(self, path: str, owner: str | None = None, group: str | None = None, mode: int = 0o755) -> None:
        """Create a directory (and parents) as an administrator would; an existing one gets the
        given owner/group/mode. The owner defaults to the nearest existing ancestor's."""
        with self.lock:
            res = self.resolve(path, self.superuser, creating=True)
            if res.last is None:
                owner = owner or res.chain[-1].owner
                self._make_parents(res, owner, mode)
                self._add_child(res, len(res.parts) - 1, self._new_dir(owner, group or res.chain[-1].group, mode))
            elif res.last.kind != DIR:
                raise NotADirectoryError(path)
            else:
                res.last.owner, res.last.mode = owner or res.last.owner, mode
                res.last.group = group or res.last.group

    def raw_status(self, path: str) -> dict | None:
        with self.lock:
            inode = self.resolve(path, self.superuser).last if self._walkable(path) else None
            return None if inode is None else self.file_status(inode)

    def _walkable(self, path: str) -> bool:
        """Whether ``path`` can be resolved without passing through a file."""
        node = self.root
        for name in split(path)[:-1]:
            if node.kind != DIR:
                return False
            node = node.children.get(name)
            if node is None:
                return True
        return node.kind == DIR


class Upload:
    """A file open for writing on behalf of one CREATE or APPEND request."""

    def __init__(self, ns: Namespace, path: str, inode: Inode, file, start_length: int | None):
        """``start_length`` is the length before an APPEND, or None for a new file."""
        self.ns, self.path, self.inode, self.file = ns, path, inode, file
        self.start_length = start_length

    def write(self, data) -> None:
        self.file.write(data)
        with self.ns.lock:
            self.inode.length += len(data)  # visible to readers as soon as it is on disk

    def finish(self) -> None:
        """Close the file. If it was deleted or overwritten meanwhile, the lease is gone: 404."""
        self.file.close()
        with self.ns.lock:
            self.inode.writer = None
            self.inode.mtime = now_ms()
            if not self.inode.alive:
                raise not_found(f"File does not exist: {self.path} (inode {self.inode.id}) "
                                "Holder does not have any open files.").via_rpc()

    def abandon(self, keep: bool) -> None:
        """The client went away mid-body: close the file with what arrived, or roll it back."""
        with self.ns.lock:
            self.inode.writer = None
            self.inode.mtime = now_ms()
            if not keep and self.inode.alive and self.start_length is not None:
                self.inode.length = self.start_length
                self.file.truncate(self.start_length)
            elif not keep and self.inode.alive:
                res = self.ns.resolve(self.path, self.ns.superuser)
                if res.last is self.inode:
                    self.ns._unlink(res)
        self.file.close()
