"""``webhdfs://`` store URLs: the grammar, parsed into a typed, validated ``WebHdfsConfig`` before any request.

    webhdfs://HOST[:PORT][,HOST[:PORT]...]/ROOT/PATH[?user=NAME | ?token=TOKEN | ?auth=kerberos][&replication=N]
                 [&max_workers=N&timeout=S&connect_timeout=S&retries=N&backoff=S&backoff_max=S&min_rate=B&verify=V]
    swebhdfs://...   (HTTPS)

Every option may also be given as a keyword of ``open_backend`` (``Store.open``), once: in the URL
or as a keyword, not both. Unknown options are rejected naming them, and so is anything that
looks like a credential other than ``token=`` (a password in the user info, ``password=``...).
Messages quote the URL without its query values, so a token is never echoed.

Several hosts are HA namenodes (HdfsCLI's ``http://nn1:p;http://nn2:p`` form). Default ports:
9870 (webhdfs), 9871 (swebhdfs).
"""

from __future__ import annotations

import getpass
import posixpath
import re
from dataclasses import dataclass, field, fields
from urllib.parse import quote, urlsplit

from .base import query_options

DEFAULT_PORTS = {"webhdfs": 9870, "swebhdfs": 9871}
AUTH_MODES = ("simple", "token", "kerberos")
MAX_REPLICATION = 512  # HDFS dfs.replication.max default
# The slowest transfer accepted: a body of N bytes must arrive within timeout + N / min_rate
# seconds (76 s for a 4 MiB chunk with the defaults), however the server paces it.
DEFAULT_MIN_RATE = 256 * 1024
_NAMENODE = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[^/:\[\]@?#\s]+):[0-9]{1,5}")
# Query names that can only be a credential a user pasted by mistake (token= is the one we take).
_CREDENTIAL_WORDS = ("password", "passwd", "secret", "key", "credential", "signature", "delegation", "ticket")

# A credential in a URL or in a message quoting one: ``token=`` in store URLs, ``delegation=`` in
# the WebHDFS requests HdfsCLI's TokenClient builds (requests/urllib3 print the request URL in
# their exceptions and debug logs).
_CREDENTIAL = re.compile(r"((?:delegation|token)=)[^&\s'\"<>;,)]+", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(text: object) -> str:
    """``text`` (a message, a URL, an exception) with every delegation token replaced by <redacted>."""
    return _CREDENTIAL.sub(r"\1" + REDACTED, str(text))


@dataclass(frozen=True)
class WebHdfsConfig:
    """Everything a WebHDFS backend needs to know, checked once.

    - ``namenodes``: ``http(s)://host:port`` of each namenode, in the order they are tried (HA).
    - ``root``: the store's directory, absolute and not ``/``; components may not contain ``:``.
    - ``scheme``: ``webhdfs`` (HTTP) or ``swebhdfs`` (HTTPS).
    - ``auth``: ``simple`` (``user.name``; HdfsCLI's InsecureClient), ``token`` (a delegation
      token; TokenClient) or ``kerberos`` (``hdfs.ext.kerberos``, needs ``requests-kerberos``).
      Defaults to ``token`` when a token is given, else ``simple``.
    - ``user``: the simple-auth user name (default: the local user name); only with simple auth.
    - ``token``: the delegation token (``auth=token``). Never shown: not in ``repr``, ``url`` or
      any message.
    - ``replication``: HDFS replication (1-512) of the chunk objects cas creates; None keeps the
      cluster's ``dfs.replication``. Manifests, tags and leases always keep the cluster default.
    - ``max_workers``: threads that may usefully call the backend; also the connection-pool size
      per host.
    - ``timeout`` / ``connect_timeout``: seconds a socket may sit idle / to connect, per request.
    - ``retries``: extra attempts after a transient failure; ``backoff``: first wait in seconds,
      doubling with jitter up to ``backoff_max``.
    - ``min_rate``: bytes/s; a read's body must arrive within ``timeout + size / min_rate``
      seconds, however the server paces it (a slower one counts as a transient timeout).
    - ``verify``: TLS certificate checking: True, False, or the path of a CA bundle.
    """

    namenodes: tuple[str, ...]
    root: str
    scheme: str = "webhdfs"
    auth: str | None = None
    user: str | None = None
    token: str | None = field(default=None, repr=False)
    replication: int | None = None
    max_workers: int = 8
    timeout: float = 60.0
    connect_timeout: float = 10.0
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 10.0
    min_rate: float = DEFAULT_MIN_RATE
    verify: bool | str = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "namenodes", tuple(self.namenodes))
        if self.scheme not in DEFAULT_PORTS:
            raise ValueError(f"WebHDFS scheme must be webhdfs or swebhdfs, got {self.scheme!r}")
        http = "https" if self.scheme == "swebhdfs" else "http"
        if not self.namenodes or not all(isinstance(n, str) and _NAMENODE.fullmatch(n) and n.startswith(http + "://")
                                         for n in self.namenodes):
            raise ValueError(f"WebHDFS namenodes must be {http}://host:port, got {list(self.namenodes)!r}")
        where = f"WebHDFS store {self._location}"
        if (not isinstance(self.root, str) or not self.root.startswith("/") or self.root == "/"
                or posixpath.normpath(self.root) != self.root):
            raise ValueError(f"{where} names no store root directory; give one, "
                             "e.g. webhdfs://namenode:9870/models/cas?user=NAME")
        for component in self.root.split("/")[1:]:
            if ":" in component:
                raise ValueError(f"{where}: HDFS path components may not contain ':' ({component!r})")
        auth = self.auth if self.auth is not None else ("token" if self.token is not None else "simple")
        auth = auth.lower() if isinstance(auth, str) else auth
        if auth not in AUTH_MODES:
            raise ValueError(f"{where}: auth={auth!r} is not one of {', '.join(AUTH_MODES)}")
        object.__setattr__(self, "auth", auth)
        for name in ("user", "token"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{where}: {name}= is empty" if value == "" else f"{where}: {name} must be a string")
        if self.token is not None and auth != "token":
            raise ValueError(f"{where}: token= cannot be combined with auth={auth}")
        if auth == "token" and self.token is None:
            raise ValueError(f"{where}: auth=token needs the delegation token: give token=")
        if self.user is not None and auth != "simple":
            raise ValueError(f"{where}: user= is for simple auth only; with a token or Kerberos the "
                             "user comes from the credential")
        if auth == "simple" and self.user is None:
            object.__setattr__(self, "user", getpass.getuser())  # what HDFS's own clients send
        if self.replication is not None and not (_whole(self.replication) and 1 <= self.replication <= MAX_REPLICATION):
            raise ValueError(f"{where}: replication must be a whole number from 1 to {MAX_REPLICATION}, "
                             f"got {self.replication!r}")
        if not (_whole(self.max_workers) and 1 <= self.max_workers <= 1024):
            raise ValueError(f"{where}: max_workers must be a whole number from 1 to 1024, got {self.max_workers!r}")
        if not (_whole(self.retries) and 0 <= self.retries <= 100):
            raise ValueError(f"{where}: retries must be a whole number from 0 to 100, got {self.retries!r}")
        for name in ("timeout", "connect_timeout"):
            if not (_number(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{where}: {name} must be a positive number of seconds, got {getattr(self, name)!r}")
        for name in ("backoff", "backoff_max"):
            if not (_number(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{where}: {name} must be a number of seconds >= 0, got {getattr(self, name)!r}")
        if not (_number(self.min_rate) and self.min_rate > 0):
            raise ValueError(f"{where}: min_rate must be a positive number of bytes per second, got {self.min_rate!r}")
        if not (isinstance(self.verify, bool) or (isinstance(self.verify, str) and self.verify)):
            raise ValueError(f"{where}: verify must be true, false or the path of a CA bundle, got {self.verify!r}")
        for name in ("timeout", "connect_timeout", "backoff", "backoff_max", "min_rate"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def _location(self) -> str:
        hosts = ",".join(n.split("://", 1)[1] for n in self.namenodes)
        return f"{self.scheme}://{hosts}{quote(self.root) if isinstance(self.root, str) else ''}"

    @property
    def display_url(self) -> str:
        """The store as users name it, with how it authenticates but never the token."""
        shown = {"kerberos": "?auth=kerberos", "token": "?auth=token"}.get(self.auth, f"?user={quote(self.user or '')}")
        return self._location + shown

    @property
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds, as requests takes them; connecting never waits longer than reading."""
        return (min(self.connect_timeout, self.timeout), self.timeout)


_URL_OPTIONS = {"user": str, "token": str, "auth": str, "replication": int, "max_workers": int, "timeout": float,
                "connect_timeout": float, "retries": int, "backoff": float, "backoff_max": float, "min_rate": float,
                "verify": bool}
_KEYWORD_OPTIONS = {f.name for f in fields(WebHdfsConfig)} - {"namenodes", "root", "scheme"}


def parse_webhdfs_url(url: str, **options) -> WebHdfsConfig:
    """The WebHdfsConfig a store URL (plus ``open_backend`` keyword options) names; ValueError /
    TypeError naming anything not understood. Never echoes query values or user info."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rsplit("@", 1)[-1]
    shown = f"{scheme}://{netloc}{parts.path}"
    if scheme not in DEFAULT_PORTS:
        raise ValueError("not a WebHDFS URL; use webhdfs://namenode:port/root?user=NAME")
    if parts.fragment:
        raise ValueError(f"WebHDFS URL {shown} has a fragment; remove it")
    if "@" in parts.netloc:
        raise ValueError(f"WebHDFS URL {shown} has user info before the host; remove it: give the user as "
                         "?user=NAME (simple auth) or a delegation token as token=")
    http_scheme = "https" if scheme == "swebhdfs" else "http"
    namenodes = []
    for host_port in netloc.split(","):
        if not host_port:
            raise ValueError(f"WebHDFS URL {shown} names no namenode (empty host in {netloc!r})")
        one = urlsplit("//" + host_port)
        try:
            port = one.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError(f"WebHDFS URL {shown}: bad port in {host_port!r}") from None
        if not one.hostname:
            raise ValueError(f"WebHDFS URL {shown}: no host in {host_port!r}")
        host = f"[{one.hostname}]" if ":" in one.hostname else one.hostname
        namenodes.append(f"{http_scheme}://{host}:{port}")
    root = posixpath.normpath("/" + parts.path.lstrip("/"))  # "//x" is not a POSIX-special root here

    values: dict[str, object] = {}
    for name, value in query_options(parts.query, _URL_OPTIONS, what=f"WebHDFS URL {shown}",
                                     credential_words=_CREDENTIAL_WORDS,
                                     credential_hint="remove it: WebHDFS takes a delegation token as token=, "
                                                     "simple auth only user=, and Kerberos its ticket"):
        values[name] = _from_text(_URL_OPTIONS[name], value)
    unknown = sorted(set(options) - _KEYWORD_OPTIONS)
    if unknown:
        raise TypeError(f"WebHDFS store {shown}: unknown option(s) {', '.join(unknown)}; "
                        f"understood: {', '.join(sorted(_KEYWORD_OPTIONS))}")
    both = sorted(set(options) & set(values))
    if both:
        raise TypeError(f"WebHDFS store {shown}: {', '.join(both)} given both in the URL and as a keyword; give it once")
    return WebHdfsConfig(namenodes=tuple(namenodes), root=root, scheme=scheme, **values, **options)


def _from_text(kind: type, text: str) -> object:
    """A query value as its option's type; a value that does not convert stays text, for
    WebHdfsConfig to refuse with the one message that option has."""
    if kind is int:
        return int(text) if text.isdigit() else text
    if kind is float:
        try:
            return float(text)
        except ValueError:
            return text
    if kind is bool:  # verify: a CA bundle path, or a yes/no
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower(), text)
    return text


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
