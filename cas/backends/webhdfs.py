"""A store on HDFS, spoken to over WebHDFS (``webhdfs://``) or WebHDFS over TLS (``swebhdfs://``).

URL grammar (parsed in ``webhdfs_url``; ``open_webhdfs`` is the one place that reads it)::

    webhdfs://HOST[:PORT][,HOST[:PORT]...]/ROOT/PATH[?user=NAME | ?token=TOKEN | ?auth=kerberos][&replication=N]
    swebhdfs://...                                      same, over HTTPS

- Several comma-separated namenodes form an HA pair (or set); they become HdfsCLI's
  semicolon-separated URL. Every request goes to the namenode that last answered; on a
  connection failure or a ``StandbyException`` the next one is tried within the same attempt.
- PORT defaults to 9870 (webhdfs) / 9871 (swebhdfs). ROOT must be an absolute, non-root path.
- Authentication is HdfsCLI's: ``user=`` -> ``InsecureClient`` (simple auth, ``user.name``;
  defaults to the local user name), ``token=`` -> ``TokenClient`` (delegation token),
  ``auth=kerberos`` -> ``hdfs.ext.kerberos.KerberosClient`` (needs ``requests-kerberos``).
  HdfsCLI only configures the shared ``requests.Session``; the requests themselves are built
  here, so that every answer's HTTP status reaches the one error-mapping function.
- ``replication=N``: chunk objects and packs are created with HDFS replication N (CREATE's ``replication``);
  manifests, tags and leases keep the cluster default.
- Anything else in the query, and any unknown keyword option, is rejected naming it.

Keyword options: ``timeout`` (seconds a socket may sit idle, per request, default 60),
``connect_timeout`` (default 10), ``max_workers`` (threads that may usefully call the backend;
also the connection-pool size per host, default 8), ``retries`` (extra attempts after a transient
failure, default 5), ``backoff`` (first wait in seconds, doubling with jitter up to
``backoff_max``, default 0.5 and 10), ``verify`` (TLS: True, False or a CA bundle path),
``min_rate`` (bytes/s, default 256 KiB/s: a read's body must arrive within ``timeout + size /
min_rate`` seconds, however the server paces it; a slower one counts as a transient timeout).
A read never takes more than the ``length`` it asked for, whatever the server sends.

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

Retries: transient failures only (connection refused/reset, timeouts, 5xx, ``StandbyException``
/``RetriableException``, a body cut short). A 4xx is an answer and is never retried. When the
retries run out the error becomes ConnectionError / TimeoutError naming the node and what to
check. ``create`` is retried step by step so it stays exactly-once; see ``_publish``. That is
why the retries live here rather than in a generic wrapper around the Backend methods: retrying
a whole ``create`` after a lost RENAME answer would report FileExistsError for our own object.

Error mapping lives in one place, ``_answer_error`` (HTTP answers) and ``_unreachable``
(transport failures).
"""

from __future__ import annotations

import errno
import getpass
import http.client
import logging
import posixpath
import socket
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from ..layout import CHUNKS, PACKS, TMP, staging_key
from .base import StoredObject, check_key
from .deadlines import Watchdog
from .webhdfs_url import parse_webhdfs_url, redact

__all__ = ["WebHdfsBackend", "open_webhdfs", "parse_webhdfs_url"]

_log = logging.getLogger(__name__)

_PREFIX = "/webhdfs/v1"
# HdfsCLI sends this on every request ("for HttpFS"); so do we.
_HEADERS = {"Content-Type": "application/octet-stream"}
# HDFS answers these with 403 but they mean "ask again" (HA standby, safe mode, lease recovery).
_RETRIABLE_EXCEPTIONS = {"StandbyException", "RetriableException", "SafeModeException"}
# The slowest transfer accepted: a body of N bytes must arrive within timeout + N / min_rate
# seconds (76 s for a 4 MiB chunk with the defaults), however the server paces it.
DEFAULT_MIN_RATE = 256 * 1024


def open_webhdfs(
    url: str,
    *,
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
    max_workers: int = 8,
    retries: int = 5,
    backoff: float = 0.5,
    backoff_max: float = 10.0,
    verify: bool | str = True,
    min_rate: float = DEFAULT_MIN_RATE,
) -> WebHdfsBackend:
    """Open the HDFS store a ``webhdfs://`` / ``swebhdfs://`` URL names (grammar: module docstring)."""
    parsed = parse_webhdfs_url(url)
    if not (isinstance(max_workers, int) and max_workers >= 1):
        raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
    if not (isinstance(retries, int) and retries >= 0):
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if not (isinstance(min_rate, (int, float)) and min_rate > 0):
        raise ValueError(f"min_rate must be a positive number of bytes per second, got {min_rate!r}")
    if not (isinstance(backoff, (int, float)) and backoff >= 0 and backoff_max >= 0):
        raise ValueError(f"backoff and backoff_max must be >= 0 seconds, got {backoff!r}, {backoff_max!r}")
    return WebHdfsBackend(
        namenodes=parsed["namenodes"],
        root=parsed["root"],
        scheme=parsed["scheme"],
        user=parsed["user"],
        token=parsed["token"],
        auth=parsed["auth"],
        chunk_replication=parsed["replication"],
        timeout=float(timeout),
        connect_timeout=float(connect_timeout),
        max_workers=max_workers,
        retries=retries,
        backoff=float(backoff),
        backoff_max=float(backoff_max),
        verify=verify,
        min_rate=float(min_rate),
    )


# -- internal failure kinds -------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth another attempt: the node did not answer, or answered "try again"."""

    def __init__(self, node: str, reason: str, *, timeout: bool = False, answered: bool = False) -> None:
        super().__init__(f"{node}: {reason}")
        self.node = node
        self.reason = reason
        self.timeout = timeout
        self.answered = answered  # the server answered (5xx / standby), it was not unreachable
        self.attempts = 1


class _TlsFailure(Exception):
    """A TLS handshake or certificate failure (never retried); its text is already redacted."""


class _StagedFileLost(_Transient):
    """Our tmp/ file vanished before it was renamed (e.g. a tmp cleaner): stage it again."""


# -- the backend ------------------------------------------------------------------------------


class WebHdfsBackend:
    """See the module docstring. Thread-safe: one pooled ``requests.Session`` shared by threads."""

    def __init__(
        self,
        *,
        namenodes: list[str],
        root: str,
        scheme: str = "webhdfs",
        user: str | None = None,
        token: str | None = None,
        auth: str = "simple",
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_workers: int = 8,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 10.0,
        verify: bool | str = True,
        min_rate: float = DEFAULT_MIN_RATE,
        chunk_replication: int | None = None,
    ) -> None:
        self.namenodes = list(namenodes)
        self.min_rate = min_rate  # bytes/s: a body must arrive within timeout + size / min_rate
        self._watchdog = Watchdog("cas-webhdfs-deadlines")
        self.chunk_replication = chunk_replication  # None: the cluster's dfs.replication
        self.root = root
        self.max_workers = max_workers
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._timeouts = (min(connect_timeout, timeout), timeout)
        self._tmp_dir = f"{root}/{TMP}"
        self._active = 0  # index of the namenode that last answered
        self._known_dirs: set[str] = set()  # directories seen to exist (saves MKDIRS)
        self._closed = False

        session = requests.Session()
        # One pool per host (namenodes and datanodes), each as large as the threads that use it,
        # so max_workers threads never queue for, or churn, connections. requests' own retries
        # stay off: ours know which operations are safe to repeat.
        adapter = HTTPAdapter(pool_connections=32, pool_maxsize=max_workers, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = verify
        self._session = session
        hdfs_url = ";".join(self.namenodes)
        client_options = {"root": root, "timeout": self._timeouts, "session": session}
        if auth == "kerberos":
            try:
                from hdfs.ext.kerberos import KerberosClient
            except ImportError as exc:
                raise ImportError(
                    f"auth=kerberos needs the requests-kerberos package ({exc}); "
                    "install it with: pip install requests-kerberos"
                ) from exc
            self.client = KerberosClient(hdfs_url, **client_options)
            shown = "?auth=kerberos"
        elif auth == "token":
            from hdfs import TokenClient

            self.client = TokenClient(hdfs_url, token, **client_options)
            shown = "?auth=token"  # never the token itself
            _redact_library_logs()  # urllib3's debug log quotes every request URL, token included
        else:
            from hdfs import InsecureClient

            user = user or getpass.getuser()
            self.client = InsecureClient(hdfs_url, user=user, **client_options)
            shown = f"?user={quote(user)}"
        self.user = user
        hosts = ",".join(nn.split("://", 1)[1] for nn in self.namenodes)
        self.url = f"{scheme}://{hosts}{quote(root)}{shown}"

    def __repr__(self) -> str:
        return f"WebHdfsBackend({self.url!r})"

    # -- paths --------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.root}/{key}" if key else self.root

    # -- one HTTP exchange --------------------------------------------------------------------

    def _send(self, method: str, url: str, node: str, *, params=None, data=None, stream=False):
        """One request; transport failures become _Transient. Redirects are followed by hand."""
        if self._closed:
            raise ValueError(f"{self!r} is closed")
        try:
            return self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=_HEADERS,
                timeout=self._timeouts,
                allow_redirects=False,
                stream=stream,
            )
        except requests.exceptions.SSLError as exc:
            # a certificate problem does not heal by retrying; mapped in _edge. ``from None``:
            # requests' exception quotes the request URL, delegation token included.
            raise _TlsFailure(redact(exc)) from None
        except requests.exceptions.ConnectTimeout:
            raise _Transient(node, f"connect timed out after {self._timeouts[0]:g} s", timeout=True) from None
        except requests.exceptions.Timeout:
            raise _Transient(node, f"read timed out: no data for {self._timeouts[1]:g} s", timeout=True) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(node, _describe(exc)) from None

    def _nn(self, method: str, path: str, op: str, **params):
        """A namenode request, failing over between HA namenodes within one attempt."""
        url_path = _PREFIX + quote(path, safe="/")
        params = {"op": op, **params}
        count = len(self.namenodes)
        start = self._active
        last: _Transient | None = None
        for i in range(count):
            index = (start + i) % count
            node = self.namenodes[index]
            try:
                resp = self._send(method, node + url_path, node, params=params)
            except _Transient as exc:
                last = exc
                continue
            if resp.status_code == 403 and _remote(resp)[0] == "StandbyException" and count > 1:
                last = _Transient(node, "namenode is in standby", answered=True)
                continue
            self._active = index
            return resp
        assert last is not None
        raise last

    def _dn(self, method: str, location: str, *, data=None, stream=False):
        """The second, data-carrying step at the URL a namenode redirected to."""
        return self._send(method, location, _node_of(location), data=data, stream=stream)

    # -- retries --------------------------------------------------------------------------------

    def _retrying(self, kinds=(_Transient,)) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(kinds),
            stop=stop_after_attempt(self.retries + 1),
            # backoff, 2*backoff, 4*backoff ... capped at backoff_max, plus up to backoff of jitter
            wait=wait_exponential(multiplier=self.backoff, max=self.backoff_max) + wait_random(0, self.backoff),
            before_sleep=_log_retry,
            reraise=True,
        )

    def _retry(self, fn, *args):
        """Call fn(*args) until it does not raise _Transient, at most retries+1 times."""
        attempt_number = 0
        try:
            for attempt in self._retrying():
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    return fn(*args)
        except _Transient as exc:
            exc.attempts = attempt_number
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _edge(self, key: str, what: str):
        """Turn what is left of a transient failure into ConnectionError / TimeoutError."""
        try:
            yield
        except _Transient as exc:
            raise self._unreachable(exc, key, what) from exc
        except _TlsFailure as exc:
            raise ConnectionError(
                f"TLS failure talking to HDFS at {self.url} to {what} {key!r}: {exc}; check the "
                "certificate (the verify= option takes a CA bundle path)"
            ) from None

    # -- error mapping: the one place -----------------------------------------------------------

    def _check(self, resp, key: str, what: str, *, ok=(200,)):
        """Return resp if its status is one of ``ok``; otherwise raise what it means."""
        if resp.status_code in ok:
            return resp
        try:
            raise self._answer_error(resp, key, what)
        finally:
            resp.close()

    def _answer_error(self, resp, key: str, what: str) -> Exception:
        """The exception an HTTP error answer means. _Transient for 5xx and "try again"."""
        status = resp.status_code
        name, message = _remote(resp)
        node = _node_of(resp.url)
        said = f"{name}: {message}" if name else (message or resp.reason or "")
        said = said.split("\n\tat ", 1)[0]  # datanode messages carry a Java stack trace
        where = f"{what} {key!r} in {self.url}"
        if status >= 500 or name in _RETRIABLE_EXCEPTIONS:
            return _Transient(node, f"HTTP {status} {said}".strip(), answered=True)
        if status == 401:
            return PermissionError(
                errno.EACCES,
                f"HDFS refused the credentials to {where} (HTTP 401); check the user, "
                "delegation token or Kerberos ticket",
                key,
            )
        if status == 404 or name == "FileNotFoundException":
            return FileNotFoundError(errno.ENOENT, f"no object to {where} ({said})", key)
        if name in ("FileAlreadyExistsException", "AlreadyBeingCreatedException"):
            return FileExistsError(errno.EEXIST, f"object already exists: cannot {where} ({said})", key)
        if name == "ParentNotDirectoryException" or (
            name == "AccessControlException" and "(is not a directory)" in message
        ):
            return NotADirectoryError(errno.ENOTDIR, f"a prefix of the key is an object: cannot {where} ({said})", key)
        if name in ("AccessControlException", "SecurityException", "AuthorizationException"):
            return PermissionError(
                errno.EACCES,
                f"permission denied to {where} as user {self.user!r} ({said}); check the owner and "
                f"mode of {self.root} and its subdirectories",
                key,
            )
        if name in ("DSQuotaExceededException", "NSQuotaExceededException", "QuotaExceededException"):
            return OSError(errno.EDQUOT, f"HDFS quota exceeded: cannot {where} ({said})", key)
        if name == "PathIsNotEmptyDirectoryException":
            return IsADirectoryError(errno.EISDIR, f"a directory, not an object: cannot {where} ({said})", key)
        if status == 400:
            return ValueError(f"HDFS rejected the request to {where}: {said}")
        return OSError(errno.EIO, f"HDFS answered HTTP {status} to {where}: {said}", key)

    def _unreachable(self, exc: _Transient, key: str, what: str) -> Exception:
        tries = f"after {exc.attempts} attempt{'s' if exc.attempts != 1 else ''}"
        if exc.node in self.namenodes:
            if len(self.namenodes) > 1:
                place = f"HDFS namenodes {', '.join(self.namenodes)} (tried each)"
            else:
                place = f"HDFS namenode {exc.node}"
            check = (
                "check that the namenode is running and serving WebHDFS at that address "
                "(dfs.webhdfs.enabled; default port 9870, 9871 for swebhdfs) and that this machine can reach it"
            )
        else:
            place = f"HDFS datanode {exc.node}"
            check = (
                "WebHDFS sends data straight to datanodes: check that this machine can reach the "
                "datanode hosts and their HTTP port (dfs.datanode.http.address, default 9864)"
            )
        if exc.answered:
            text = f"{place} kept failing to {what} {key!r} {tries}: {exc.reason}; {check}"
        else:
            text = f"could not reach {place} to {what} {key!r} {tries} ({exc.reason}); {check}"
        return TimeoutError(errno.ETIMEDOUT, text) if exc.timeout else ConnectionError(text)

    # -- small metadata operations ---------------------------------------------------------------

    def _status_once(self, path: str, key: str, what: str) -> dict | None:
        resp = self._nn("GET", path, "GETFILESTATUS")
        if resp.status_code == 404:
            resp.close()
            return None
        return self._check(resp, key, what).json()["FileStatus"]

    def _status(self, path: str, key: str, what: str) -> dict | None:
        return self._retry(self._status_once, path, key, what)

    def _mkdirs(self, path: str, key: str) -> None:
        def once():
            self._check(self._nn("PUT", path, "MKDIRS"), key, "create the parent directory of")

        self._retry(once)
        self._known_dirs.add(path)

    def _discard(self, path: str) -> None:
        """Best-effort DELETE of one of *our* tmp/ files; never retried, never raises."""
        try:
            self._nn("DELETE", path, "DELETE", recursive="false").close()
        except Exception as exc:  # noqa: BLE001 - leftovers under tmp/ are allowed by the contract
            _log.warning("could not remove staged file %s (%s); it stays under tmp/", path, redact(exc))

    def _children(self, path: str, key: str, what: str) -> list[dict] | None:
        """LISTSTATUS entries of a directory; None if missing; [] if it is a file."""

        def once():
            resp = self._nn("GET", path, "LISTSTATUS")
            if resp.status_code == 404:
                resp.close()
                return None
            return self._check(resp, key, what).json()["FileStatuses"]["FileStatus"]

        entries = self._retry(once)
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
        with self._edge(key, "read"):
            return self._retry(self._read_once, path, key, offset, length)

    def _read_once(self, path: str, key: str, offset: int, length: int | None) -> bytes:
        params = {"offset": offset}
        if length is not None:
            params["length"] = length
        resp = self._nn("GET", path, "OPEN", **params)
        if resp.status_code in (301, 302, 303, 307, 308):
            location = resp.headers.get("Location")
            resp.close()
            if not location:
                raise OSError(errno.EIO, f"namenode redirected the read of {key!r} without a Location", key)
            resp = self._dn("GET", location, stream=True)
        # (a 200 straight from the namenode URL is HttpFS serving the bytes itself)
        if resp.status_code != 200:
            if _past_end(resp):
                resp.close()
                return b""
            self._check(resp, key, "read")
        with resp:
            return self._read_body(resp, length)

    def _read_body(self, resp, length: int | None) -> bytes:
        """The body of an OPEN answer: at most ``length`` bytes (all if None), within a deadline.

        Never reads past ``length``, whatever the server sends (a hostile or broken server may send
        an endless body). The deadline is ``timeout + size / min_rate`` seconds for the whole
        body: socket timeouts only bound idle time, and a datanode trickling a byte every few
        seconds would otherwise hold the read forever.
        """
        node = _node_of(resp.url)
        declared = resp.headers.get("Content-Length")
        declared = int(declared) if declared is not None and declared.isdigit() else None
        sizes = [n for n in (length, declared) if n is not None]
        want = min(sizes) if sizes else None
        seconds = self._timeouts[1] + (want or 0) / self.min_rate
        started = time.monotonic()
        deadline = self._watchdog.arm(seconds, lambda: _shut_down(resp))
        try:
            # One read of the whole body: ``resp.content`` would gather it 10 KiB at a time in
            # Python, which costs more CPU than decompressing it.
            body = resp.raw.read(want, decode_content=False)
        except (requests.exceptions.RequestException, http.client.HTTPException, urllib3.exceptions.HTTPError,
                OSError) as exc:
            if deadline.fired:
                body = b""
            else:
                timeout = isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower()
                raise _Transient(node, f"transfer cut short ({_describe(exc)})", timeout=timeout) from None
        finally:
            self._watchdog.disarm(deadline)
        if deadline.fired:
            raise _Transient(node, f"transfer too slow: {want if want is not None else 'the'} bytes not received "
                             f"within {time.monotonic() - started:.1f} s (deadline: timeout {self._timeouts[1]:g} s "
                             f"+ size at min_rate {self.min_rate:g} B/s)", timeout=True, answered=True)
        if declared is not None and len(body) < want:
            raise _Transient(node, f"short read: {len(body)} of {want} bytes")
        if want is not None and declared is not None and declared > want:
            _shut_down(resp)  # unread bytes must not reach the next request on this connection
        return body

    # -- create ------------------------------------------------------------------------------------

    def create(self, key: str, data: bytes) -> None:
        final = self._path(key)
        if not key.strip("/"):
            raise ValueError("cannot create an object at the store root")
        if not isinstance(data, bytes):
            data = bytes(data)
        with self._edge(key, "create"):
            # No existence check up front: the store only creates what it learned is missing (a
            # put asked ``missing()`` once), and a taken key shows up as RENAME false anyway.
            parent = posixpath.dirname(final)
            if parent not in self._known_dirs:
                self._mkdirs(parent, key)
            # Each attempt stages under a fresh tmp name: a cut upload may have left a truncated
            # (closed) file at the old name, and CREATE overwrite=false would refuse to reuse it.
            self._retry(self._create_once, final, data, key)

    def _create_once(self, final: str, data: bytes, key: str) -> None:
        staged = self._path(staging_key())
        try:
            self._stage(staged, data, key)
            try:
                self._publish(staged, final, data, key)
            except _StagedFileLost:
                raise  # nothing was published: staging afresh is safe
            except _Transient as exc:
                # Once a RENAME has been sent, staging afresh could turn our own (unseen) success
                # into a FileExistsError, so a failure from here on is final (see _publish).
                raise self._unreachable(exc, key, "create") from exc
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
        extra = {"replication": self.chunk_replication} if self.chunk_replication and key.strip("/").startswith((f"{CHUNKS}/", f"{PACKS}/")) else {}
        resp = self._check(self._nn("PUT", staged, "CREATE", overwrite="false", **extra), key, "create", ok=(307,))
        location = resp.headers.get("Location")
        if not location:
            raise OSError(errno.EIO, f"namenode answered CREATE for {key!r} without a Location", key)
        try:
            # bytes body -> Content-Length, never chunked encoding
            resp = self._dn("PUT", location, data=data)
        except _Transient as exc:
            if data and not exc.timeout:
                self._diagnose_refused_create(key)
            raise
        self._check(resp, key, "create", ok=(200, 201))
        resp.close()

    def _diagnose_refused_create(self, key: str) -> None:
        """A datanode refusing a CREATE (permission, quota) answers before reading the body and
        closes the socket, so a sender may see a reset instead of the 403. An empty-bodied
        CREATE gets the refusal as a clean answer: raise it if there is one, else return and let
        the reset count as transient. Costs 3 requests, on this failure path only."""
        probe = self._path(staging_key())
        try:
            resp = self._check(self._nn("PUT", probe, "CREATE", overwrite="false"), key, "create", ok=(307,))
            location = resp.headers.get("Location")
            if location:
                self._check(self._dn("PUT", location, data=b""), key, "create", ok=(200, 201)).close()
        except _Transient:
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
                for attempt in self._retrying():
                    with attempt:
                        attempt_number = attempt.retry_state.attempt_number
                        try:
                            resp = self._nn("PUT", staged, "RENAME", destination=final)
                            ok = self._check(resp, key, "create").json()["boolean"]
                        except _Transient:
                            uncertain = True
                            raise
            except _Transient as exc:
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
                raise _StagedFileLost(self.namenodes[self._active], f"staged file {staged} vanished before RENAME")
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
            return self._retry(self._read_once, final, key, 0, len(data) + 1) == data
        except FileNotFoundError:
            return False

    # -- delete / list / walk / missing ---------------------------------------------------------

    def delete(self, key: str) -> bool:
        path = self._path(key)
        # DELETE answers false for a missing path. After a lost answer the retry may say false
        # although our first attempt removed it; the object is gone either way.

        def once():
            return self._check(self._nn("DELETE", path, "DELETE", recursive="false"), key, "delete").json()["boolean"]

        with self._edge(key, "delete"):
            return bool(self._retry(once))

    def list(self, prefix: str) -> list[str]:
        path = self._path(prefix)
        with self._edge(prefix, "list"):
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
        with self._edge(dir_key, "walk"):
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
            with self._edge(key, "check for"):
                try:
                    found = self._status(self._path(key), key, "check for")
                except NotADirectoryError:  # a prefix of the key is an object: the key cannot exist
                    return {key}
            if found is not None:
                self._remember_dir(parent)
            return set() if found is not None and found.get("type") == "FILE" else {key}
        with self._edge(keys[0], "check for"):
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

    def close(self) -> None:
        self._closed = True
        self._watchdog.close()
        self._session.close()


# -- helpers ----------------------------------------------------------------------------------------


def _shut_down(resp) -> None:
    """End a streamed response's connection now (wakes a read blocked on it; never reused).

    The socket is the connection's, or, once http.client has handed it to a response that will
    close it (``Connection: close``, as datanodes answer OPEN), the one under the response's file.
    """
    conn = getattr(resp.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(getattr(getattr(resp.raw, "_fp", None), "fp", None), "raw", None)  # SocketIO
        sock = getattr(fp, "_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _remote(resp) -> tuple[str | None, str]:
    """(exception simple name, message) of a WebHDFS error body, tolerating non-JSON bodies."""
    try:
        remote = resp.json()["RemoteException"]
        return remote.get("exception"), str(remote.get("message") or "")
    except Exception:  # noqa: BLE001 - any body that is not a RemoteException
        try:
            return None, resp.text[:200].strip()
        except Exception:  # noqa: BLE001
            return None, ""


def _past_end(resp) -> bool:
    """OPEN past the end: NN 403 "Offset=... out of the range" (non-empty file) or DN 403
    EOFException "Cannot seek after EOF" (empty file). The contract says: return b""."""
    if resp.status_code != 403:
        return False
    name, message = _remote(resp)
    return (name == "IOException" and "out of the range" in message) or name == "EOFException"


def _node_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _describe(exc: BaseException) -> str:
    text = redact(exc)
    for needle, short in (
        ("Connection refused", "connection refused"),
        ("Connection reset", "connection reset"),
        ("Connection aborted", "connection aborted"),
        ("RemoteDisconnected", "the server closed the connection without answering"),
        ("IncompleteRead", "incomplete read"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "name resolution failed"),
    ):
        if needle in text:
            return short
    return f"{type(exc).__name__}: {text[:200]}"


class _RedactingFilter(logging.Filter):
    """Rewrites a log record so no delegation token reaches any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format: leave it to logging
            return True
        record.msg, record.args = redact(text), ()
        return True


_REDACTING_FILTER = _RedactingFilter()


def _redact_library_logs() -> None:
    for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests", "hdfs.client"):
        logger = logging.getLogger(name)
        if _REDACTING_FILTER not in logger.filters:
            logger.addFilter(_REDACTING_FILTER)


def _log_retry(state) -> None:
    exc = state.outcome.exception() if state.outcome else None
    _log.info("WebHDFS attempt %d failed (%s); retrying in %.2f s", state.attempt_number, redact(exc),
              state.next_action.sleep)
