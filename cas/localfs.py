"""The local side of a transfer: reading a model from disk, and materialising one safely.

A destination is built in a hidden staging path beside it and renamed into place only when every
byte is written and verified, so an interrupted or failed get never leaves a half-written model
where the user asked for one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
import time
import uuid
from dataclasses import dataclass

from .errors import AlreadyExists, BadManifest, BadName, CasError, NotFound, SourceChanged
from .manifest import KIND_DIR, KIND_FILE, Manifest, safe_relative_path


@dataclass(frozen=True)
class SourceFile:
    local_path: str  # absolute path on this machine
    rel_path: str  # path recorded in the manifest ('/'-separated)
    size: int
    mode: int
    stamp: tuple = ()  # (size, mtime_ns, ctime_ns, inode, device) when scanned: see check_unchanged


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _check_source_name(rel_path: str, local_path: str, verb: str = "put") -> str:
    """Refuse, before any upload, a name that no reader could materialise (see manifest.safe_relative_path)."""
    try:
        rel_path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadName(f"cannot {verb} {local_path!r}: its name is not valid UTF-8; rename it (cas stores names as UTF-8)") from None
    try:
        return safe_relative_path(rel_path, "source")
    except BadManifest:
        raise BadName(f"cannot {verb} {local_path!r}: its name {rel_path!r} holds a newline, backslash or other control "
                      "character that cas cannot materialise on every system; rename it") from None


def scan_source(local_path: str, verb: str = "put") -> tuple[str, list[SourceFile], list[str]]:
    """Return (kind, files, empty_dirs) for a file or a directory tree to store.

    Symlinks are followed, to files and to directories alike: a version stores content, not
    links. A symlink loop, a dangling symlink or a special file (socket, FIFO, device) is refused,
    so a put never loops or hangs. Every name is checked before anything is read or sent.
    ``verb`` names the job in messages ("cannot put ...", "cannot repair from ...").
    """
    path = os.path.abspath(local_path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"cannot {verb} {local_path!r}: no such file or directory (or a dangling symlink)") from None
    if stat.S_ISREG(st.st_mode):
        name = _check_source_name(os.path.basename(path), path, verb)
        return KIND_FILE, [SourceFile(path, name, st.st_size, stat.S_IMODE(st.st_mode), _stamp(st))], []
    if not stat.S_ISDIR(st.st_mode):
        raise CasError(f"cannot {verb} {local_path!r}: it is neither a regular file nor a directory")
    files: list[SourceFile] = []
    empty_dirs: list[str] = []
    # (directory, its path in the manifest, the (dev, inode) of it and its ancestors: a loop check)
    stack = [(path, "", frozenset({(st.st_dev, st.st_ino)}))]
    while stack:
        dir_path, rel_dir, ancestors = stack.pop()
        names = sorted(os.listdir(dir_path))
        if not names and rel_dir:
            empty_dirs.append(rel_dir)
        subdirs = []
        for name in names:
            full = os.path.join(dir_path, name)
            rel = _check_source_name(f"{rel_dir}/{name}" if rel_dir else name, full, verb)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                if os.path.islink(full):
                    raise CasError(f"cannot {verb} {full!r}: it is a dangling symlink; remove it or point it at a file") from None
                raise SourceChanged(f"{full!r} disappeared while the put listed its directory; nothing was published, "
                                    "run the put again once it is stable") from None
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in ancestors:
                    raise CasError(f"cannot {verb} {local_path!r}: {full!r} is a symlink loop (it leads back to a "
                                   "directory that contains it); remove the link")
                subdirs.append((full, rel, ancestors | {(st.st_dev, st.st_ino)}))
            elif stat.S_ISREG(st.st_mode):
                files.append(SourceFile(full, rel, st.st_size, stat.S_IMODE(st.st_mode), _stamp(st)))
            else:
                raise CasError(f"cannot {verb} {full!r}: it is not a regular file (socket, FIFO or device)")
        stack.extend(reversed(subdirs))
    return KIND_DIR, files, empty_dirs  # the order of a top-down walk, names sorted


def check_unchanged(sources: list[SourceFile]) -> None:
    """SourceChanged if any file's size, times or identity moved since ``scan_source`` saw it.

    A file rewritten while a put reads it would otherwise be published as a mix of old and new
    bytes (chunks the store already had are never re-read).
    """
    for src in sources:
        try:
            now = _stamp(os.stat(src.local_path))
        except FileNotFoundError:
            now = None
        if src.stamp and now != src.stamp:
            raise SourceChanged(f"{src.local_path!r} changed while it was being stored (it was written, replaced or "
                                "removed); nothing was published, run the put again once it is stable")


class Staging:
    """A hidden sibling of the destination where a version is assembled.

    Use ``prepare`` to lay out pre-sized files, write chunks at their offsets into
    ``file_path(rel)``, then ``commit`` to move the result into place (or ``discard``).

    The get holds an flock on its staging file or directory until it ends; the kernel drops it
    when the process dies, however it dies. So ``prepare`` can tell the leftovers of a killed get
    (kill -9, the OOM killer) from a concurrent get's work in progress, and removes the former.
    """

    def __init__(self, manifest: Manifest, destination: str, *, force: bool,
                 previous_checkout: dict | None = None, owned: bool = False) -> None:
        """``previous_checkout``: ``tree_identity`` of the tree the last get left at ``destination``
        (from the local cache); with ``force`` a directory that is still exactly that tree may be
        replaced. ``owned``: ``destination`` is the cache's checkout of this version, no user's
        directory: with ``force`` it is replaced whatever files were added to it."""
        self.manifest = manifest
        self.destination = os.path.abspath(destination)
        self.force = force
        self.owned = owned
        self._previous = previous_checkout
        if os.path.lexists(self.destination):
            self._check_replaceable()
        parent, name = os.path.split(self.destination)
        self.path = os.path.join(parent, f"{_partial_prefix(name)}{uuid.uuid4().hex[:12]}")
        self._lock_fd: int | None = None

    def _check_replaceable(self) -> None:
        """Refuse to replace what --force must never delete: see ``replace_refusal``."""
        if not self.force:
            raise AlreadyExists(f"destination {self.destination!r} exists; choose another path or pass --force "
                                "(force=True) to replace it")
        refusal = replace_refusal(self.destination, self.manifest, self._previous, owned=self.owned)
        if refusal:
            raise AlreadyExists(f"--force will not replace {self.destination!r}: {refusal}")

    def file_path(self, rel_path: str) -> str:
        if self.manifest.kind == KIND_FILE:
            return self.path
        return os.path.join(self.path, *rel_path.split("/"))

    def prepare(self) -> None:
        """Create the staging tree with every file at its final size (sparse).

        A free-space check up front makes a full disk fail here, with nothing downloaded yet. (Not
        posix_fallocate: on ext4 it makes every later write convert unwritten extents, which cost
        3-4x the CPU of writing into a sparse file in our measurements.)
        """
        parent = os.path.dirname(self.path)
        os.makedirs(parent, exist_ok=True)
        sweep_dead_partials(parent)
        try:
            fs = os.statvfs(parent)
            if fs.f_bavail * fs.f_frsize < self.manifest.size:
                raise OSError(errno.ENOSPC, "not enough free space", parent)
            if self.manifest.kind == KIND_DIR:
                os.mkdir(self.path)
                self._lock()
                for d in self.manifest.dirs:
                    os.makedirs(self.file_path(d), exist_ok=True)
            for f in self.manifest.files:
                target = self.file_path(f.path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    if self.manifest.kind == KIND_FILE:
                        self._lock()
                    os.ftruncate(fd, f.size)
                finally:
                    os.close(fd)
        except OSError as exc:
            self.discard()
            raise self.explain(exc) from None
        except BaseException:  # Ctrl-C in a notebook: no locked leftover for the life of the kernel
            self.discard()
            raise

    def _lock(self) -> None:
        """Hold a shared flock on the staging copy while this get runs (see sweep_dead_partials)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # a file system without flock (some NFS mounts): the 60 s grace still protects
            os.close(fd)
            return
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def explain(self, exc: OSError) -> Exception:
        """A full disk (here or halfway through writing) as a one-line error naming the version."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return CasError(
                f"not enough disk space at {os.path.dirname(self.destination)!r} for "
                f"{self.manifest.model}@{self.manifest.version} ({self.manifest.size} bytes); "
                "free space or choose another path"
            )
        return exc

    def commit(self) -> None:
        """Set modes, then move the staged tree into place (replacing the old one only with force)."""
        allowed = 0o777 & ~current_umask()  # a mode from the store never widens what the user allows
        for f in self.manifest.files:
            os.chmod(self.file_path(f.path), f.mode & allowed)
        try:
            self._commit()
        finally:
            self._unlock()

    def _commit(self) -> None:
        if not os.path.lexists(self.destination):
            os.rename(self.path, self.destination)
            return
        if not self.force:
            self.discard()
            raise AlreadyExists(f"destination {self.destination!r} appeared while fetching; nothing was replaced")
        try:
            self._check_replaceable()  # again: files may have appeared in it while we fetched
        except AlreadyExists:
            self.discard()
            raise
        # a file over a file or a symlink (the link itself, never what it points at)
        both_files = self.manifest.kind == KIND_FILE and not stat.S_ISDIR(os.lstat(self.destination).st_mode)
        if both_files:
            os.replace(self.path, self.destination)  # atomic for a file
            return
        aside = f"{self.path}-old"
        os.rename(self.destination, aside)
        # Once more where nobody looks any longer: a file written into the tree while the check
        # above walked it must not be deleted with it.
        refusal = None if self.owned else checkout_refusal(aside, self._previous)
        if refusal:
            try:
                os.rename(aside, self.destination)
            except OSError:
                refusal += f" (it is at {aside!r}: something else took its place meanwhile)"
            self.discard()
            raise AlreadyExists(f"--force will not replace {self.destination!r}: {refusal}")
        os.rename(self.path, self.destination)
        _remove(aside)

    def discard(self) -> None:
        self._unlock()
        _remove(self.path)


def _identity(st: os.stat_result) -> list[int] | str | None:
    """What tells a file cas wrote from anything put in its place since: inode, size, modification
    and change time (ctime cannot be set back, so neither an edit with its mtime restored nor a new
    file on a reused inode passes). "dir" for a directory, None for anything else (a symlink, a
    device, a FIFO)."""
    if stat.S_ISREG(st.st_mode):
        return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return "dir" if stat.S_ISDIR(st.st_mode) else None


def tree_identity(root: str) -> dict[str, list[int] | str | None]:
    """{path relative to ``root`` ("" for root itself): ``_identity``} of every entry of a tree."""
    found = {"": _identity(os.lstat(root))}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found[rel] = _identity(os.lstat(os.path.join(dirpath, name)))
    return found


def replace_refusal(destination: str, manifest: Manifest, previous: dict | None, *, owned: bool = False) -> str | None:
    """Why ``--force`` must not replace ``destination`` with ``manifest``'s version, or None if it may.

    --force replaces a regular file (or a symlink) with a file, never a device, FIFO or socket. It
    replaces a directory with a version's tree only when nothing in it is the user's
    (``checkout_refusal``). It never deletes the working directory or a directory that contains it.
    """
    what = f"{manifest.model}@{manifest.version}"
    st = os.lstat(destination)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        if not (stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return "it is a device, FIFO or socket, not a regular file; choose another path"
        if manifest.kind == KIND_DIR:
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "file"
            return f"it is a {kind} and {what} is a directory; remove the {kind} yourself or choose another path"
        return None
    real = os.path.realpath(destination)
    cwd = os.path.realpath(os.getcwd())
    if cwd == real or cwd.startswith(real.rstrip(os.sep) + os.sep):
        return "it is the working directory or contains it; choose another path"
    if manifest.kind == KIND_FILE:
        return (f"it is a directory and {what} is a single file; give a file path "
                f"such as {os.path.join(destination, manifest.files[0].path)!r}")
    return None if owned else checkout_refusal(destination, previous)


def checkout_refusal(directory: str, previous: dict | None) -> str | None:
    """Why ``directory`` holds something of the user's, or None if replacing it loses nothing.

    Replaceable: empty, or holding nothing but files the last get left there untouched
    (``previous``: their ``tree_identity``, as the local cache recorded it) and directories; what
    the user removed from a checkout is no loss. A file added, edited or replaced, a symlink, or a
    directory of the user's own files with the version's names is the user's.
    """
    now = tree_identity(directory)
    if all(kind == "dir" for kind in now.values()):
        return None  # empty, or empty directories only
    if not previous:
        return "it is not a checkout this machine's cache knows of; move your files away or choose another path"
    for rel in sorted(now):
        if rel not in previous or (now[rel] != "dir" and now[rel] != previous[rel]):
            return (f"it holds {rel!r}, which is not what a get left there (added, edited or replaced since, or "
                    "from a get this machine's cache did not record); move it away or choose another path")
    return None


def current_umask() -> int:
    """This process's umask, read without changing it (Linux /proc), else by setting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not thread-safe for a moment; only where /proc is missing
    os.umask(mask)
    return mask


NAME_MAX = 255  # bytes in one path component on Linux file systems


def _partial_prefix(name: str) -> str:
    """The staging name's start: the destination's name, cut so that the whole staging name and the
    ``-old`` name a replaced tree is moved to fit NAME_MAX however long the destination's is."""
    while name and len(os.fsencode(f".{name}.cas-partial-")) + 12 + len("-old") > NAME_MAX:
        name = name[:-1]
    return f".{name}.cas-partial-"


PARTIAL_GRACE_S = 60  # a staging copy this fresh may be a get that has not taken its lock yet


PARTIAL_NAME = re.compile(r"\..+\.cas-partial-[0-9a-f]{12}")


def sweep_dead_partials(directory: str) -> list[str]:
    """Remove the staging leftovers of gets into ``directory`` whose process is gone; their paths.

    A staging copy untouched for PARTIAL_GRACE_S on which an exclusive flock can be taken has no
    live owner (a running get holds a shared one). Where locks fail (NFS emulates flock with
    byte-range locks, which want a file opened for writing), nothing is removed.
    Asides of a forced replace (``-old``) are left alone: one may be the only copy of what the
    destination held.
    """
    parent = os.path.abspath(directory)
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:  # missing, or a directory we may write into but not list
        return removed
    for entry in entries:
        if not PARTIAL_NAME.fullmatch(entry):
            continue
        path = os.path.join(parent, entry)
        try:
            if time.time() - _newest_mtime(path) < PARTIAL_GRACE_S:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or not ours to open (a symlink, no permission)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live get is filling it (or locks do not work here: then leave it be)
        finally:
            os.close(fd)
        _remove(path)
        removed.append(path)
    return removed


def _newest_mtime(path: str) -> float:
    """The latest modification time of ``path`` or of anything under it (a live get keeps writing;
    a file lock alone is not trusted on network file systems mounted without lock support)."""
    newest = os.lstat(path).st_mtime
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                try:
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
                except FileNotFoundError:
                    pass
    return newest


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
