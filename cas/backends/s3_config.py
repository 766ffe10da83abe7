"""``s3://`` store URLs: the grammar, parsed into a typed, validated ``S3Config`` before any request.

    s3://BUCKET[/PREFIX][?endpoint=URL&region=R&addressing=auto|path|virtual&create=auto|if-none-match|oss
                         &max_workers=N&profile=NAME&retries=N&timeout=S&connect_timeout=S]

Every option may also be given as a keyword of ``open_backend`` (``Store.open``). Unknown options
are rejected naming them. Credentials never go in the URL: they come from the standard AWS chain
(environment, ``~/.aws``, instance or container roles); ``profile=`` only names a profile of that
chain. Messages quote the URL without its query
values, so nothing a user pasted by mistake is echoed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from .base import query_options

ADDRESSING = ("auto", "path", "virtual")
CREATE_MODES = ("auto", "if-none-match", "oss")
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (plus the dots and
# underscores older buckets and other stores allow)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", re.IGNORECASE)
_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "credential", "signature")


@dataclass(frozen=True)
class S3Config:
    """Everything an S3 backend needs to know, checked once.

    - ``endpoint``: the service URL (``http(s)://host[:port]``); None means AWS S3 itself.
    - ``region``: the signing region (None: the AWS chain's default, else us-east-1).
    - ``addressing``: ``path`` (``endpoint/bucket/key``: MinIO, moto, most self-hosted stores),
      ``virtual`` (``bucket.endpoint/key``: Aliyun OSS requires it) or ``auto`` (botocore decides).
    - ``create``: how exclusive create is asked for: ``if-none-match`` (``If-None-Match: *``, AWS S3
      and most stores), ``oss`` (Aliyun OSS's ``x-oss-forbid-overwrite: true``), or ``auto``
      (``oss`` for an ``*.aliyuncs.com`` endpoint or a store that answers NotImplemented, else
      ``if-none-match``). Whatever the mode, the first write probes that the store refuses an
      overwrite, and a store that does not is refused.
    - ``max_workers``: threads that may call the backend at once, and the connection-pool size;
      lower it to cap the request rate (the Store's ``n_workers`` defaults to it).
    - ``connect_timeout`` / ``timeout``: seconds to connect / for a socket to sit idle.
    - ``retries``: extra attempts after a transient failure (503 SlowDown, 5xx, reset, timeout),
      with botocore's jittered exponential backoff.
    """

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    addressing: str = "auto"
    create: str = "auto"
    profile: str | None = None
    max_workers: int = 16
    connect_timeout: float = 10.0
    timeout: float = 60.0
    retries: int = 5

    def __post_init__(self) -> None:
        where = self.display_url
        if not _BUCKET.fullmatch(self.bucket or ""):
            raise ValueError(f"S3 URL {where}: {self.bucket!r} is not a bucket name (3-63 letters, digits, '.', '-', '_')")
        parts = self.prefix.split("/") if self.prefix else []
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"S3 URL {where}: the prefix {self.prefix!r} has an empty, '.' or '..' component")
        if self.endpoint is not None:
            ep = urlsplit(self.endpoint)
            if ep.scheme not in ("http", "https") or not ep.hostname or ep.path not in ("", "/") or ep.query:
                raise ValueError(f"S3 URL {where}: endpoint must be http(s)://host[:port], got {_without_userinfo(self.endpoint)!r}")
            if ep.username or ep.password:
                raise ValueError(f"S3 URL {where}: the endpoint carries credentials; remove them, "
                                 "cas reads credentials from the AWS chain (environment, ~/.aws, roles)")
        if self.region is not None and not re.fullmatch(r"[a-z0-9-]{2,40}", self.region):
            raise ValueError(f"S3 URL {where}: {self.region!r} is not a region name (e.g. us-east-1, oss-cn-hangzhou)")
        if self.addressing not in ADDRESSING:
            raise ValueError(f"S3 URL {where}: addressing must be one of {', '.join(ADDRESSING)}, got {self.addressing!r}")
        if self.create not in CREATE_MODES:
            raise ValueError(f"S3 URL {where}: create must be one of {', '.join(CREATE_MODES)}, got {self.create!r}")
        if not (isinstance(self.max_workers, int) and 1 <= self.max_workers <= 1024):
            raise ValueError(f"S3 URL {where}: max_workers must be an integer from 1 to 1024, got {self.max_workers!r}")
        if not (isinstance(self.retries, int) and 0 <= self.retries <= 50):
            raise ValueError(f"S3 URL {where}: retries must be an integer from 0 to 50, got {self.retries!r}")
        for name in ("connect_timeout", "timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"S3 URL {where}: {name} must be a positive number of seconds, got {value!r}")

    @property
    def display_url(self) -> str:
        """The store as users name it, with only the non-secret options that change where it is."""
        endpoint = _without_userinfo(self.endpoint) if self.endpoint else None
        query = "&".join(f"{k}={v}" for k, v in (("endpoint", endpoint), ("region", self.region)) if v)
        path = f"/{self.prefix}" if self.prefix else ""
        return f"s3://{self.bucket}{path}" + (f"?{query}" if query else "")

    def key(self, key: str) -> str:
        """The object name of a store key (the prefix joined on)."""
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def is_oss(self) -> bool:
        return bool(self.endpoint and (urlsplit(self.endpoint).hostname or "").endswith(".aliyuncs.com"))


_URL_OPTIONS = {"endpoint": str, "region": str, "addressing": str, "create": str, "profile": str, "max_workers": int,
                "retries": int, "timeout": float, "connect_timeout": float}
_KEYWORD_OPTIONS = {f.name for f in fields(S3Config)} - {"bucket", "prefix"}


def parse_s3_url(url: str, **options) -> S3Config:
    """The S3Config a store URL (plus ``open_backend`` keyword options) names; ValueError/TypeError
    naming anything not understood. Never echoes query values or user info."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise ValueError("not an S3 URL; use s3://BUCKET/PREFIX?endpoint=URL&region=R")
    bucket = parts.netloc.rsplit("@", 1)[-1]
    shown = f"s3://{bucket}{parts.path}"
    if "@" in parts.netloc:
        raise ValueError(f"S3 URL {shown} carries credentials before the bucket; remove them: cas reads credentials "
                         "from the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles)")
    if ":" in bucket:
        raise ValueError(f"S3 URL {shown}: a bucket has no port; give the service as ?endpoint=http://host:port")
    if parts.fragment:
        raise ValueError(f"S3 URL {shown} has a fragment; remove it")
    values: dict[str, object] = {}
    for name, value in query_options(parts.query, _URL_OPTIONS, what=f"S3 URL {shown}",
                                     credential_words=_CREDENTIAL_WORDS,
                                     credential_hint="remove it from the URL: cas reads credentials from the AWS "
                                                     "chain (environment, ~/.aws, instance roles)"):
        if _URL_OPTIONS[name] is int:
            if not value.isdigit():
                raise ValueError(f"S3 URL {shown}: {name} must be a whole number, got {value!r}")
            values[name] = int(value)
        elif _URL_OPTIONS[name] is float:
            try:
                values[name] = float(value)
            except ValueError:
                raise ValueError(f"S3 URL {shown}: {name} must be a number of seconds, got {value!r}") from None
        elif not value:
            raise ValueError(f"S3 URL {shown}: {name}= is empty")
        else:
            values[name] = value
    unknown = sorted(set(options) - _KEYWORD_OPTIONS)
    if unknown:
        raise TypeError(f"S3 store {shown}: unknown option(s) {', '.join(unknown)}; understood: {', '.join(sorted(_KEYWORD_OPTIONS))}")
    both = sorted(set(options) & set(values))
    if both:
        raise TypeError(f"S3 store {shown}: {', '.join(both)} given both in the URL and as a keyword; give it once")
    if isinstance(values.get("endpoint"), str):
        values["endpoint"] = str(values["endpoint"]).rstrip("/")
    return S3Config(bucket=bucket, prefix=parts.path.strip("/"), **values, **options)


def _without_userinfo(endpoint: str) -> str:
    """An endpoint as it may be shown: scheme, host and port, nothing else."""
    p = urlsplit(endpoint)
    host = p.netloc.rsplit("@", 1)[-1]
    return f"{p.scheme}://{host}" if host else "(unparseable endpoint)"
