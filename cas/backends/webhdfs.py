"""A store on HDFS, spoken to over WebHDFS (``webhdfs://``) or WebHDFS over TLS (``swebhdfs://``).

URL grammar and options: ``cas.backends.webhdfs_config`` (``WebHdfsConfig``, parsed by
``parse_webhdfs_url``; ``open_webhdfs`` is the one place that reads it)::

    webhdfs://HOST[:PORT][,HOST[:PORT]...]/ROOT/PATH[?user=NAME | ?token=TOKEN | ?auth=kerberos][&replication=N...]
    swebhdfs://...                                      same, over HTTPS

- Several comma-separated namenodes form an HA pair (or set); they become HdfsCLI's
  semicolon-separated URL. Every request goes to the namenode that last answered; on a
  connection failure or a ``StandbyException`` the next one is tried within the same attempt.
- Authentication is HdfsCLI's: ``user=`` -> ``InsecureClient`` (simple auth, ``user.name``;
  defaults to the local user name), ``token=`` -> ``TokenClient`` (delegation token),
  ``auth=kerberos`` -> ``hdfs.ext.kerberos.KerberosClient`` (needs ``requests-kerberos``).
  HdfsCLI only configures the shared ``requests.Session``; the requests themselves are built
  here, so that every answer's HTTP status reaches the one error-mapping function.
- ``replication=N``: chunk objects and packs are created with HDFS replication N (CREATE's ``replication``);
  manifests, tags and leases keep the cluster default.
- ``min_rate``: a read's body must arrive within ``timeout + size / min_rate`` seconds, however
  the server paces it. A read never takes more than the ``length`` it asked for, whatever the
  server sends.

Requests per operation (NN = namenode metadata op, DN = datanode data transfer)
------------------------------------------------------------------------------

- ``create``: 3 = CREATE(tmp, NN 307) + PUT(tmp, DN) + RENAME, when the parent directory is
  known to exist (this process made it or saw it in a listing, e.g. in the ``missing()`` a put
  asks first); 4 with MKDIRS when it is not. There is no existence check before the upload: a
  put creates only chunks that ``missing()`` just reported absent, so a check per chunk would be
  redundant, and a key taken meanwhile is still caught (RENAME answers false, then one
  GETFILESTATUS tells why, on that path only). The store never makes a directory at an object
  key, so RENAME's move-into-a-directory behaviour cannot swallow an object; a directory there
  (made by hand) makes ``create`` raise IsADirectoryError when the RENAME fails. The 201 from the
  datanode is sent only after the file is closed, so it already proves the staged length.
- ``read``: 2 = OPEN (NN 307) + GET (DN).
- ``missing``: one request per distinct parent directory among the keys, run in up to
  ``max_workers`` threads: LISTSTATUS of the parent when two or more keys share it (a 404 means
  all of them are missing), GETFILESTATUS of the key when it is alone (same count, smaller
  answer). Per-key GETFILESTATUS would cost one per key, so this is never more. With the
  two-level chunk fan-out (65,536 directories) a put of C new chunks asks about
  ~65,536*(1-exp(-C/65,536)) directories: about one request per chunk for a model of a few
  thousand chunks, falling to 65,536/C per chunk for very large puts.
- ``list``: 1 LISTSTATUS. ``walk``: 1 LISTSTATUS per directory, each level in parallel.
  ``delete``: 1 DELETE.

Retries and error mapping live in the client (``webhdfs_client``): transient failures only, and
HTTP answers become builtin exceptions in one place. ``create`` is retried step by step so it
stays exactly-once; see ``_publish``. That is why the retries are not a generic wrapper around the
Backend methods: retrying a whole ``create`` after a lost RENAME answer would report
FileExistsError for our own object.
"""

from __future__ import annotations

import errno
import logging
import posixpath
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ..layout import CHUNKS, PACKS, staging_key
from .base import Backend, StoredObject, check_key, closed_error
from .webhdfs_client import Transient, WebHdfsClient, past_end
from .webhdfs_config import WebHdfsConfig, parse_webhdfs_url, redact

__all__ = ["WebHdfsBackend", "WebHdfsConfig", "open_webhdfs", "parse_webhdfs_url"]

_log = logging.getLogger(__name__)


def open_webhdfs(url: str, **options) -> WebHdfsBackend:
    """Open the HDFS store a ``webhdfs://`` / ``swebhdfs://`` URL names (options: ``WebHdfsConfig``)."""
    return WebHdfsBackend(parse_webhdfs_url(url, **options))


class _StagedFileLost(Transient):
    """Our tmp/ file vanished before it was renamed (e.g. a tmp cleaner): stage it again."""


class WebHdfsBackend(Backend):
    """See the module docstring. Thread-safe: the client's pooled session is shared by threads."""

    def __init__(self, config: WebHdfsConfig) -> None:
        self.config = config
        self.client = WebHdfsClient(config)
        self.url = config.display_url
        self.root = config.root
        self.user = config.user
        self.namenodes = self.client.namenodes
        self.max_workers = config.max_workers
        self.chunk_replication = config.replication  # None: the cluster's dfs.replication
        self._known_dirs: set[str] = set()  # directories seen to exist (saves MKDIRS)

    def __repr__(self) -> str:
        return f"WebHdfsBackend({self.url!r})"

    # -- paths --------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        if self.client.closed:  # every operation comes through here, before any request
            raise closed_error(self.url)
        check_key(key)
        return f"{self.root}/{key}" if key else self.root

    # -- small metadata operations ---------------------------------------------------------------

    def _status_once(self, path: str, key: str, what: str) -> dict | None:
        resp = self.client.nn("GET", path, "GETFILESTATUS")
        if resp.status_code == 404:
            resp.close()
            return None
        return self.client.check(resp, key, what).json()["FileStatus"]

    def _status(self, path: str, key: str, what: str) -> dict | None:
        return self.client.retry(self._status_once, path, key, what)

    def _mkdirs(self, path: str, key: str) -> None:
        def once():
            self.client.check(self.client.nn("PUT", path, "MKDIRS"), key, "create the parent directory of")

        self.client.retry(once)
        self._known_dirs.add(path)

    def _discard(self, path: str) -> None:
        """Best-effort DELETE of one of *our* tmp/ files; never retried, never raises."""
        try:
            self.client.nn("DELETE", path, "DELETE", recursive="false").close()
        except Exception as exc:  # noqa: BLE001 - leftovers under tmp/ are allowed by the contract
            _log.warning("could not remove staged file %s (%s); it stays under tmp/", path, redact(exc))

    def _children(self, path: str, key: str, what: str) -> list[dict] | None:
        """LISTSTATUS entries of a directory; None if missing; [] if it is a file."""

        def once():
            resp = self.client.nn("GET", path, "LISTSTATUS")
            if resp.status_code == 404:
                resp.close()
                return None
            return self.client.check(resp, key, what).json()["FileStatuses"]["FileStatus"]

        entries = self.client.retry(once)
        if entries is None:
            return None
        if len(entries) == 1 and not entries[0].get("pathSuffix"):
            return []  # LISTSTATUS of a file answers with the file itself
        self._remember_dir(path)
        return entries

    def _remember_dir(self, path: str) -> None:
        if len(self._known_dirs) > 200_000:  # bound memory; only a cache
            self._known_dirs.clear()
        self._known_dirs.add(path)

    # -- read --------------------------------------------------------------------------------------

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"read of {key!r}: offset and length must be >= 0, got {offset}, {length}")
        path = self._path(key)
        with self.client.edge(key, "read"):
            return self.client.retry(self._read_once, path, key, offset, length)

    def _read_once(self, path: str, key: str, offset: int, length: int | None) -> bytes:
        params = {"offset": offset}
        if length is not None:
            params["length"] = length
        resp = self.client.nn("GET", path, "OPEN", **params)
        if resp.status_code in (301, 302, 303, 307, 308):
            location = resp.headers.get("Location")
            resp.close()
            if not location:
                raise OSError(errno.EIO, f"namenode redirected the read of {key!r} without a Location", key)
            resp = self.client.dn("GET", location, stream=True)
        # (a 200 straight from the namenode URL is HttpFS serving the bytes itself)
        if resp.status_code != 200:
            if past_end(resp):
                resp.close()
                return b""
            self.client.check(resp, key, "read")
        with resp:
            return self.client.read_body(resp, length)

    # -- create ------------------------------------------------------------------------------------

    def create(self, key: str, data: bytes) -> None:
        final = self._path(key)
        if not key.strip("/"):
            raise ValueError("cannot create an object at the store root")
        if not isinstance(data, bytes):
            data = bytes(data)
        with self.client.edge(key, "create"):
            # No existence check up front: the store only creates what it learned is missing (a
            # put asked ``missing()`` once), and a taken key shows up as RENAME false anyway.
            parent = posixpath.dirname(final)
            if parent not in self._known_dirs:
                self._mkdirs(parent, key)
            # Each attempt stages under a fresh tmp name: a cut upload may have left a truncated
            # (closed) file at the old name, and CREATE overwrite=false would refuse to reuse it.
            self.client.retry(self._create_once, final, data, key)

    def _create_once(self, final: str, data: bytes, key: str) -> None:
        staged = self._path(staging_key())
        try:
            self._stage(staged, data, key)
            try:
                self._publish(staged, final, data, key)
            except _StagedFileLost:
                raise  # nothing was published: staging afresh is safe
            except Transient as exc:
                # Once a RENAME has been sent, staging afresh could turn our own (unseen) success
                # into a FileExistsError, so a failure from here on is final (see _publish).
                raise self.client.unreachable(exc, key, "create") from exc
        except BaseException:
            self._discard(staged)  # only ever our own staging name, never the final key
            raise

    def _taken(self, found: dict, key: str) -> Exception:
        if found.get("type") == "DIRECTORY":
            return IsADirectoryError(
                errno.EISDIR, f"cannot create {key!r} in {self.url}: a directory exists at that key", key
            )
        return FileExistsError(errno.EEXIST, f"object already exists: {key!r} in {self.url}", key)

    def _stage(self, staged: str, data: bytes, key: str) -> None:
        """CREATE overwrite=false at a tmp name: NN 307, then the body to the datanode."""
        data_objects = (f"{CHUNKS}/", f"{PACKS}/")
        extra = {"replication": self.chunk_replication} if self.chunk_replication and key.strip("/").startswith(data_objects) else {}
        resp = self.client.check(self.client.nn("PUT", staged, "CREATE", overwrite="false", **extra), key, "create", ok=(307,))
        location = resp.headers.get("Location")
        if not location:
            raise OSError(errno.EIO, f"namenode answered CREATE for {key!r} without a Location", key)
        try:
            # bytes body -> Content-Length, never chunked encoding
            resp = self.client.dn("PUT", location, data=data)
        except Transient as exc:
            if data and not exc.timeout:
                self._diagnose_refused_create(key)
            raise
        self.client.check(resp, key, "create", ok=(200, 201))
        resp.close()

    def _diagnose_refused_create(self, key: str) -> None:
        """A datanode refusing a CREATE (permission, quota) answers before reading the body and
        closes the socket, so a sender may see a reset instead of the 403. An empty-bodied
        CREATE gets the refusal as a clean answer: raise it if there is one, else return and let
        the reset count as transient. Costs 3 requests, on this failure path only."""
        probe = self._path(staging_key())
        try:
            resp = self.client.check(self.client.nn("PUT", probe, "CREATE", overwrite="false"), key, "create", ok=(307,))
            location = resp.headers.get("Location")
            if location:
                self.client.check(self.client.dn("PUT", location, data=b""), key, "create", ok=(200, 201)).close()
        except Transient:
            return
        finally:
            self._discard(probe)

    def _publish(self, staged: str, final: str, data: bytes, key: str) -> None:
        """RENAME the staged file to its final key, exactly once.

        RENAME answers {"boolean": false} without saying why: the source is missing, the
        destination exists, or the destination's parent is missing. So a false is followed by
        GETFILESTATUS of the destination:

        - destination exists -> someone else published first: FileExistsError (the caller's
          ``_discard`` removes our staged file);
        - destination missing, staged file present -> parent missing (e.g. a stale entry in
          ``_known_dirs``): MKDIRS and RENAME once more;
        - both missing -> our staged file vanished: _StagedFileLost, which stages afresh.

        Retried RENAME. A RENAME whose answer was lost (reset, timeout, 5xx, HA failover) may or
        may not have happened. We RENAME the *same* staged name again: if the first one did
        happen, the source is now missing and the answer is false, while the destination holds
        our bytes. So after an uncertain attempt, "destination exists" is success when the
        staged file is gone AND the destination holds exactly ``data`` (same length, same
        bytes, read back). If the staged file is still there, our rename cannot have happened
        (RENAME is atomic): the destination is someone else's and FileExistsError is right. The
        one case this cannot tell apart is another creator publishing byte-identical data at the
        same moment; both then report success, which is harmless because the object is exactly
        what each wanted. Never is an uncertain RENAME followed by a fresh upload + RENAME:
        that would turn our own earlier success into a FileExistsError.
        """
        uncertain = False
        made_parent = False
        while True:
            ok = None
            attempt_number = 0
            try:
                for attempt in self.client.retrying():
                    with attempt:
                        attempt_number = attempt.retry_state.attempt_number
                        try:
                            resp = self.client.nn("PUT", staged, "RENAME", destination=final)
                            ok = self.client.check(resp, key, "create").json()["boolean"]
                        except Transient:
                            uncertain = True
                            raise
            except Transient as exc:
                exc.attempts = attempt_number
                raise
            if ok:
                return
            found = self._status(final, key, "create")
            if found is not None:
                if found.get("type") == "FILE" and uncertain and self._holds(final, staged, data, key, found):
                    return
                raise self._taken(found, key)
            if self._status(staged, key, "create") is None:
                raise _StagedFileLost(self.client.namenodes[self.client.active], f"staged file {staged} vanished before RENAME")
            if made_parent:
                raise OSError(errno.EIO, f"HDFS refused to rename the staged {staged} to {key!r} twice", key)
            self._known_dirs.discard(posixpath.dirname(final))
            self._mkdirs(posixpath.dirname(final), key)
            made_parent = True

    def _holds(self, final: str, staged: str, data: bytes, key: str, found: dict) -> bool:
        """After an uncertain RENAME: did it land? (staged gone, destination == our bytes)"""
        if found.get("length") != len(data):
            return False
        if self._status(staged, key, "create") is not None:
            return False
        try:
            return self.client.retry(self._read_once, final, key, 0, len(data) + 1) == data
        except FileNotFoundError:
            return False

    # -- delete / list / walk / missing ---------------------------------------------------------

    def delete(self, key: str) -> bool:
        path = self._path(key)
        # DELETE answers false for a missing path. After a lost answer the retry may say false
        # although our first attempt removed it; the object is gone either way.

        def once():
            return self.client.check(self.client.nn("DELETE", path, "DELETE", recursive="false"), key, "delete").json()["boolean"]

        with self.client.edge(key, "delete"):
            return bool(self.client.retry(once))

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        parent = posixpath.dirname(target)

        def once():
            resp = self.client.nn("PUT", source, "RENAME", destination=target)
            return self.client.check(resp, src, "move").json()["boolean"]

        with self.client.edge(src, "move"):
            if parent not in self._known_dirs:
                self._mkdirs(parent, dst)
            if self.client.retry(once):
                return
            # false: the destination is taken (the same content, or our own lost-answer attempt),
            # the source is missing, or the parent went away
            if self._status(target, dst, "move") is not None:
                self.delete(src)
                return
            if self._status(source, src, "move") is None:
                raise FileNotFoundError(errno.ENOENT, f"no object to move at {src!r} in {self.url}", src)
            self._known_dirs.discard(parent)
            self._mkdirs(parent, dst)
            if not self.client.retry(once):
                raise OSError(errno.EIO, f"HDFS refused to rename {src!r} to {dst!r} in {self.url}", src)

    def list(self, prefix: str) -> list[str]:
        path = self._path(prefix)
        with self.client.edge(prefix, "list"):
            entries = self._children(path, prefix, "list")
        return sorted(e["pathSuffix"] for e in entries or ())

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        base = check_key(prefix)
        level = [base]
        pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="cas-webhdfs-walk")
        try:
            while level:
                if len(level) == 1:
                    listed = [self._walk_list(level[0])]
                else:
                    listed = pool.map(self._walk_list, level)
                next_level = []
                for dir_key, entries in zip(level, listed):
                    for entry in entries:
                        name = entry["pathSuffix"]
                        child = f"{dir_key}/{name}" if dir_key else name
                        if entry.get("type") == "DIRECTORY":
                            next_level.append(child)
                        else:
                            yield StoredObject(child, int(entry.get("length", 0)),
                                               int(entry.get("modificationTime", 0)) / 1000)
                level = next_level
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _walk_list(self, dir_key: str) -> list[dict]:
        with self.client.edge(dir_key, "walk"):
            return self._children(self._path(dir_key), dir_key, "walk") or []

    def missing(self, keys: Iterable[str]) -> set[str]:
        by_parent: dict[str, list[str]] = {}
        for key in set(keys):
            by_parent.setdefault(posixpath.dirname(self._path(key)), []).append(key)
        groups = list(by_parent.items())
        if not groups:
            return set()
        if len(groups) == 1:
            return self._missing_in(groups[0])
        workers = min(self.max_workers, len(groups))
        with ThreadPoolExecutor(workers, thread_name_prefix="cas-webhdfs-missing") as pool:
            result: set[str] = set()
            for part in pool.map(self._missing_in, groups):
                result |= part
            return result

    def _missing_in(self, group: tuple[str, list[str]]) -> set[str]:
        parent, keys = group
        if len(keys) == 1:
            key = keys[0]
            with self.client.edge(key, "check for"):
                try:
                    found = self._status(self._path(key), key, "check for")
                except NotADirectoryError:  # a prefix of the key is an object: the key cannot exist
                    return {key}
            if found is not None:
                self._remember_dir(parent)
            return set() if found is not None and found.get("type") == "FILE" else {key}
        with self.client.edge(keys[0], "check for"):
            try:
                entries = self._children(parent, keys[0], "check for")
            except NotADirectoryError:
                return set(keys)
        if not entries:
            return set(keys)
        present = {e["pathSuffix"] for e in entries if e.get("type") == "FILE"}
        return {k for k in keys if posixpath.basename(self._path(k)) not in present}

    def flush(self) -> None:
        """Nothing to do: a file HDFS has closed (the datanode answers 201 only after the close)
        is replicated per dfs.replication, and RENAME is a namenode transaction in its edit log."""
        self._path("")  # refused once closed

    def close(self) -> None:
        self.client.close()
