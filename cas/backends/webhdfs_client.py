"""The WebHDFS client: one pooled ``requests.Session``, namenode failover, retries, deadlines and
the mapping of every failure to a builtin exception. ``WebHdfsBackend`` (``webhdfs.py``) builds the
Backend operations on it; this module knows HTTP and HDFS's error answers, not store keys' layout.

- Requests are built here, not by HdfsCLI: HdfsCLI only configures the shared session (user name,
  delegation token or Kerberos auth), so every answer's HTTP status reaches ``check``.
- Namenode requests go to the namenode that last answered; on a connection failure or a
  ``StandbyException`` the next one is tried within the same attempt (``nn``). Redirects to
  datanodes are followed by hand (``dn``).
- Retries: transient failures only (connection refused/reset, timeouts, 5xx, ``StandbyException``
  /``RetriableException``, a body cut short). A 4xx is an answer and is never retried. When the
  retries run out the error becomes ConnectionError / TimeoutError naming the node and what to
  check (``edge``, ``unreachable``).
- Error mapping lives in one place: ``answer_error`` (HTTP answers) and ``unreachable``
  (transport failures). No message, log line or traceback carries a delegation token.
- Deadlines: a read's body must arrive within ``timeout + size / min_rate`` seconds, however the
  server paces it (``read_body``).
"""

from __future__ import annotations

import errno
import http.client
import logging
import socket
import time
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from .base import closed_error
from .deadlines import Watchdog
from .webhdfs_config import REDACTED, WebHdfsConfig, redact

__all__ = ["TlsFailure", "Transient", "WebHdfsClient", "past_end"]

_log = logging.getLogger("cas.backends.webhdfs")  # one logger for the backend and its client

_PREFIX = "/webhdfs/v1"
# HdfsCLI sends this on every request ("for HttpFS"); so do we.
_HEADERS = {"Content-Type": "application/octet-stream"}
# HDFS answers these with 403 but they mean "ask again" (HA standby, safe mode, lease recovery).
_RETRIABLE_EXCEPTIONS = {"StandbyException", "RetriableException", "SafeModeException"}


# -- failure kinds the backend sees ------------------------------------------------------------


class Transient(Exception):
    """A failure worth another attempt: the node did not answer, or answered "try again"."""

    def __init__(self, node: str, reason: str, *, timeout: bool = False, answered: bool = False) -> None:
        super().__init__(f"{node}: {reason}")
        self.node = node
        self.reason = reason
        self.timeout = timeout
        self.answered = answered  # the server answered (5xx / standby), it was not unreachable
        self.attempts = 1


class TlsFailure(Exception):
    """A TLS handshake or certificate failure (never retried); its text is already redacted."""


# -- the client -------------------------------------------------------------------------------


class WebHdfsClient:
    """HTTP to one HDFS cluster for one store root; thread-safe (one pooled session shared by threads)."""

    def __init__(self, config: WebHdfsConfig) -> None:
        self.config = config
        self.namenodes = list(config.namenodes)
        self.root = config.root
        self.user = config.user
        self.url = config.display_url  # the store, as messages name it
        self.timeouts = config.timeouts
        self.active = 0  # index of the namenode that last answered
        self.closed = False
        self._watchdog = Watchdog("cas-webhdfs-deadlines")

        session = requests.Session()
        # One pool per host (namenodes and datanodes), each as large as the threads that use it,
        # so max_workers threads never queue for, or churn, connections. requests' own retries
        # stay off: ours know which operations are safe to repeat.
        adapter = HTTPAdapter(pool_connections=32, pool_maxsize=config.max_workers, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = config.verify
        self.session = session
        hdfs_url = ";".join(self.namenodes)
        client_options = {"root": config.root, "timeout": self.timeouts, "session": session}
        if config.auth == "kerberos":
            try:
                from hdfs.ext.kerberos import KerberosClient
            except ImportError as exc:
                raise ImportError(
                    f"auth=kerberos needs the requests-kerberos package ({exc}); "
                    "install it with: pip install requests-kerberos"
                ) from exc
            self.hdfscli = KerberosClient(hdfs_url, **client_options)
        elif config.auth == "token":
            from hdfs import TokenClient

            self.hdfscli = TokenClient(hdfs_url, config.token, **client_options)
            _redact_library_logs()  # urllib3's debug log quotes every request URL, token included
        else:
            from hdfs import InsecureClient

            self.hdfscli = InsecureClient(hdfs_url, user=config.user, **client_options)

    def __repr__(self) -> str:
        return f"WebHdfsClient({self.url!r})"

    def scrub(self, text: str) -> str:
        """``text`` without the delegation token, wherever and however it is quoted."""
        text = redact(text)
        token = self.config.token
        return text.replace(token, REDACTED) if token else text

    def close(self) -> None:
        self.closed = True
        self._watchdog.close()
        self.session.close()

    # -- one HTTP exchange --------------------------------------------------------------------

    def send(self, method: str, url: str, node: str, *, params=None, data=None, stream=False):
        """One request; transport failures become Transient. Redirects are followed by hand."""
        if self.closed:
            raise closed_error(self.url)
        try:
            return self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=_HEADERS,
                timeout=self.timeouts,
                allow_redirects=False,
                stream=stream,
            )
        except requests.exceptions.SSLError as exc:
            # a certificate problem does not heal by retrying; mapped in _edge. ``from None``:
            # requests' exception quotes the request URL, delegation token included.
            raise TlsFailure(redact(exc)) from None
        except requests.exceptions.ConnectTimeout:
            raise Transient(node, f"connect timed out after {self.timeouts[0]:g} s", timeout=True) from None
        except requests.exceptions.Timeout:
            raise Transient(node, f"read timed out: no data for {self.timeouts[1]:g} s", timeout=True) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise Transient(node, describe(exc)) from None

    def nn(self, method: str, path: str, op: str, **params):
        """A namenode request, failing over between HA namenodes within one attempt."""
        url_path = _PREFIX + quote(path, safe="/")
        params = {"op": op, **params}
        count = len(self.namenodes)
        start = self.active
        last: Transient | None = None
        for i in range(count):
            index = (start + i) % count
            node = self.namenodes[index]
            try:
                resp = self.send(method, node + url_path, node, params=params)
            except Transient as exc:
                last = exc
                continue
            if resp.status_code == 403 and remote_error(resp)[0] == "StandbyException" and count > 1:
                last = Transient(node, "namenode is in standby", answered=True)
                continue
            self.active = index
            return resp
        assert last is not None
        raise last

    def dn(self, method: str, location: str, *, data=None, stream=False):
        """The second, data-carrying step at the URL a namenode redirected to."""
        return self.send(method, location, node_of(location), data=data, stream=stream)

    # -- retries --------------------------------------------------------------------------------

    def retrying(self, kinds=(Transient,)) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(kinds),
            stop=stop_after_attempt(self.config.retries + 1),
            # backoff, 2*backoff, 4*backoff ... capped at backoff_max, plus up to backoff of jitter
            wait=wait_exponential(multiplier=self.config.backoff, max=self.config.backoff_max) + wait_random(0, self.config.backoff),
            before_sleep=_log_retry,
            reraise=True,
        )

    def retry(self, fn, *args):
        """Call fn(*args) until it does not raise Transient, at most retries+1 times."""
        attempt_number = 0
        try:
            for attempt in self.retrying():
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    return fn(*args)
        except Transient as exc:
            exc.attempts = attempt_number
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def edge(self, key: str, what: str):
        """Turn what is left of a transient failure into ConnectionError / TimeoutError."""
        try:
            yield
        except Transient as exc:
            raise self.unreachable(exc, key, what) from exc
        except TlsFailure as exc:
            raise ConnectionError(
                f"TLS failure talking to HDFS at {self.url} to {what} {key!r}: {exc}; check the "
                "certificate (the verify= option takes a CA bundle path)"
            ) from None

    # -- error mapping: the one place -----------------------------------------------------------

    def check(self, resp, key: str, what: str, *, ok=(200,)):
        """Return resp if its status is one of ``ok``; otherwise raise what it means."""
        if resp.status_code in ok:
            return resp
        try:
            raise self.answer_error(resp, key, what)
        finally:
            resp.close()

    def answer_error(self, resp, key: str, what: str) -> Exception:
        """The exception an HTTP error answer means. Transient for 5xx and "try again"."""
        status = resp.status_code
        name, message = remote_error(resp)
        node = node_of(resp.url)
        said = f"{name}: {message}" if name else (message or resp.reason or "")
        said = said.split("\n\tat ", 1)[0]  # datanode messages carry a Java stack trace
        said = self.scrub(said)  # HDFS quotes a token it does not know: "token (...) can't be found"
        where = f"{what} {key!r} in {self.url}"
        if status >= 500 or name in _RETRIABLE_EXCEPTIONS:
            return Transient(node, f"HTTP {status} {said}".strip(), answered=True)
        if name == "InvalidToken":
            return PermissionError(
                errno.EACCES,
                f"HDFS refused the delegation token to {where} ({said}); it may have expired or been "
                "cancelled: fetch a new one (hdfs fetchdt) and give it as token=",
                key,
            )
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

    def unreachable(self, exc: Transient, key: str, what: str) -> Exception:
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
    def read_body(self, resp, length: int | None) -> bytes:
        """The body of an OPEN answer: at most ``length`` bytes (all if None), within a deadline.

        Never reads past ``length``, whatever the server sends (a hostile or broken server may send
        an endless body). The deadline is ``timeout + size / min_rate`` seconds for the whole
        body: socket timeouts only bound idle time, and a datanode trickling a byte every few
        seconds would otherwise hold the read forever.
        """
        node = node_of(resp.url)
        declared = resp.headers.get("Content-Length")
        declared = int(declared) if declared is not None and declared.isdigit() else None
        sizes = [n for n in (length, declared) if n is not None]
        want = min(sizes) if sizes else None
        seconds = self.timeouts[1] + (want or 0) / self.config.min_rate
        started = time.monotonic()
        deadline = self._watchdog.arm(seconds, lambda: shut_down(resp))
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
                raise Transient(node, f"transfer cut short ({describe(exc)})", timeout=timeout) from None
        finally:
            self._watchdog.disarm(deadline)
        if deadline.fired:
            raise Transient(node, f"transfer too slow: {want if want is not None else 'the'} bytes not received "
                             f"within {time.monotonic() - started:.1f} s (deadline: timeout {self.timeouts[1]:g} s "
                             f"+ size at min_rate {self.config.min_rate:g} B/s)", timeout=True, answered=True)
        if declared is not None and len(body) < want:
            raise Transient(node, f"short read: {len(body)} of {want} bytes")
        if want is not None and declared is not None and declared > want:
            shut_down(resp)  # unread bytes must not reach the next request on this connection
        return body


# -- helpers ----------------------------------------------------------------------------------------


def shut_down(resp) -> None:
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


def remote_error(resp) -> tuple[str | None, str]:
    """(exception simple name, message) of a WebHDFS error body, tolerating non-JSON bodies."""
    try:
        remote = resp.json()["RemoteException"]
        return remote.get("exception"), str(remote.get("message") or "")
    except Exception:  # noqa: BLE001 - any body that is not a RemoteException
        try:
            return None, resp.text[:200].strip()
        except Exception:  # noqa: BLE001
            return None, ""


def past_end(resp) -> bool:
    """OPEN past the end: NN 403 "Offset=... out of the range" (non-empty file) or DN 403
    EOFException "Cannot seek after EOF" (empty file). The contract says: return b""."""
    if resp.status_code != 403:
        return False
    name, message = remote_error(resp)
    return (name == "IOException" and "out of the range" in message) or name == "EOFException"


def node_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def describe(exc: BaseException) -> str:
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

