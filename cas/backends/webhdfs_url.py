"""``webhdfs://`` store URLs: the grammar, parsed and checked before any request is made.

    webhdfs://HOST[:PORT][,HOST[:PORT]...]/ROOT/PATH[?user=NAME | ?token=TOKEN | ?auth=kerberos][&replication=N]
    swebhdfs://...   (HTTPS)

``replication=N`` (1-512) is the HDFS replication of the chunk objects cas creates; manifests,
tags and leases keep the cluster default (``dfs.replication``): they are small and every version
hangs on them.

Several hosts are HA namenodes (HdfsCLI's ``http://nn1:p;http://nn2:p`` form). Default ports:
9870 (webhdfs), 9871 (swebhdfs).
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import parse_qsl, urlsplit

DEFAULT_PORTS = {"webhdfs": 9870, "swebhdfs": 9871}
_QUERY_KEYS = ("user", "token", "auth", "replication")
MAX_REPLICATION = 512  # HDFS dfs.replication.max default


# A credential in a URL or in a message quoting one: ``token=`` in store URLs, ``delegation=`` in
# the WebHDFS requests HdfsCLI's TokenClient builds (requests/urllib3 print the request URL in
# their exceptions and debug logs).
_CREDENTIAL = re.compile(r"((?:delegation|token)=)[^&\s'\"<>;,)]+", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(text: object) -> str:
    """``text`` (a message, a URL, an exception) with every delegation token replaced by <redacted>."""
    return _CREDENTIAL.sub(r"\1" + REDACTED, str(text))


def parse_webhdfs_url(url: str) -> dict:
    """Split a store URL into its parts; raise ValueError naming anything not understood.

    Returns ``{"scheme", "namenodes": [http(s)://host:port, ...], "root", "user", "token",
    "auth", "replication"}`` (replication None: the cluster default).
    """
    parts = urlsplit(url)
    shown = redact(url) if isinstance(url, str) else url  # messages never carry the token
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"not a WebHDFS URL: {shown!r}; use webhdfs://namenode:port/root?user=NAME")
    if parts.fragment:
        raise ValueError(f"WebHDFS URL {shown!r} has a fragment '#{parts.fragment}'; remove it")
    if "@" in parts.netloc:
        raise ValueError(f"WebHDFS URL {shown!r} has user info before the host; give the user as ?user=NAME")
    http_scheme = "https" if scheme == "swebhdfs" else "http"
    namenodes = []
    for host_port in parts.netloc.split(","):
        if not host_port:
            raise ValueError(f"WebHDFS URL {shown!r} names no namenode (empty host in {parts.netloc!r})")
        one = urlsplit("//" + host_port)
        try:
            port = one.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError(f"WebHDFS URL {shown!r}: bad port in {host_port!r}") from None
        if not one.hostname:
            raise ValueError(f"WebHDFS URL {shown!r}: no host in {host_port!r}")
        host = f"[{one.hostname}]" if ":" in one.hostname else one.hostname
        namenodes.append(f"{http_scheme}://{host}:{port}")
    root = posixpath.normpath(parts.path or "/")
    if root in ("/", "//") or not root.startswith("/"):
        raise ValueError(
            f"WebHDFS URL {shown!r} names no store root directory; give one, "
            "e.g. webhdfs://namenode:9870/models/cas?user=NAME"
        )
    for component in root.split("/")[1:]:
        if ":" in component:
            raise ValueError(f"WebHDFS URL {shown!r}: HDFS path components may not contain ':' ({component!r})")

    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in query:
            raise ValueError(f"WebHDFS URL {shown!r} gives {name!r} twice")
        query[name] = value
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise ValueError(
            f"WebHDFS URL {shown!r} has unknown parameter(s) {', '.join(unknown)}; "
            f"understood: {', '.join(_QUERY_KEYS)} (other settings are keyword options of open_backend)"
        )
    auth = query.get("auth", "token" if "token" in query else "simple").lower()
    if auth not in ("simple", "token", "kerberos"):
        raise ValueError(f"WebHDFS URL {shown!r}: auth={auth!r} is not one of simple, kerberos")
    if "token" in query and auth != "token":
        raise ValueError(f"WebHDFS URL {shown!r}: token= cannot be combined with auth={auth}")
    if "user" in query and auth != "simple":
        raise ValueError(
            f"WebHDFS URL {shown!r}: user= is for simple auth only; with a token or Kerberos the "
            "user comes from the credential"
        )
    for name in ("user", "token"):
        if name in query and not query[name]:
            raise ValueError(f"WebHDFS URL {shown!r}: {name}= is empty")
    replication = None
    if "replication" in query:
        text = query["replication"]
        if not text.isdigit() or not 1 <= int(text) <= MAX_REPLICATION:
            raise ValueError(f"WebHDFS URL {shown!r}: replication must be a whole number from 1 to {MAX_REPLICATION}, "
                             f"got {text!r}")
        replication = int(text)
    return {
        "replication": replication,
        "scheme": scheme,
        "namenodes": namenodes,
        "root": root,
        "user": query.get("user"),
        "token": query.get("token"),
        "auth": auth,
    }
