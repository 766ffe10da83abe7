"""A store on S3-compatible object storage (AWS S3, Aliyun OSS, MinIO, Ceph RGW, R2), through boto3.

URL grammar and options: ``cas.backends.s3_config`` (``s3://BUCKET/PREFIX?endpoint=URL&region=R...``).
Credentials come only from the standard AWS chain (environment, ``~/.aws``, instance roles).

How the contract maps onto S3 (a store key ``K`` is the object ``PREFIX/K``):

- ``create``: **one PUT** with ``If-None-Match: *`` (Aliyun OSS: ``x-oss-forbid-overwrite: true``)
  and a fresh random token in the object's metadata (``x-amz-meta-cas-token``). A PUT is atomic and
  invisible until complete, so nothing is staged under ``tmp/`` and an interrupted upload leaves
  nothing behind (chunks are single PUTs, never multipart). A refusal (412 PreconditionFailed, OSS
  409 FileAlreadyExists) is followed by one HEAD: if the object carries *our* token, an earlier
  attempt of this very call landed and its answer was lost (botocore retried), so it is success;
  else FileExistsError. 409 ConditionalRequestConflict (a concurrent conditional write) is retried.
- The first ``create`` of a backend **probes** the store: it creates a ``tmp/`` object, PUTs
  it again and deletes it. A store that accepts the second PUT has no exclusive create, and with
  it version numbers and tag moves would silently collide, so it is refused with one line.
  ``create=auto`` picks ``oss`` for ``*.aliyuncs.com`` endpoints and for a store that answers the
  first probe PUT with NotImplemented. OSS honours ``x-oss-forbid-overwrite`` only while bucket
  versioning has never been enabled: with versioning on (or suspended) the probe refuses the store.
- The first operation of a backend **checks the store** with one ListObjectsV2 (MaxKeys=1): a
  bucket that does not exist, refused credentials, a region mismatch or an endpoint that is not
  S3 each become one ``StoreMisconfigured`` line naming the store and what to do, before anything
  is written. (A HEAD could not tell these apart: its error answers have no body.)
- ``read``: GET, ranged when ``offset``/``length`` ask for part; 416 means "past the end": b"".
  ``read_into``: GET straight into the caller's buffer (the Content-Length is checked first).
- ``missing``: one HEAD per key, in up to ``max_workers`` threads. 404 is missing; 403 is never
  taken for missing (S3 answers 403 for absent keys to callers without ``s3:ListBucket``).
- ``list``: ListObjectsV2 with ``Delimiter=/``, paginated. ``walk``: one delimited listing of the
  prefix, then a flat listing of each sub-prefix in parallel (``chunks/`` has 256).
- ``delete``: HEAD then DELETE (S3's DELETE does not say whether the key existed).
- ``flush``: nothing; S3 acknowledges a PUT once it is durable, and is strongly consistent.

Retries: botocore's ``standard`` mode (503 SlowDown, throttling, 5xx, resets, timeouts; jittered
exponential backoff), ``retries`` extra attempts; a body cut short mid-read is read again here.
Lease objects (``locks/``) go through a second client with its own connection pool, so a
heartbeat never waits behind chunk transfers (restic #4199).
"""

from __future__ import annotations

import errno
import io
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.exceptions as bx
from botocore.config import Config

from ..errors import StoreMisconfigured
from ..layout import LOCKS, staging_key
from .base import Backend, StoredObject, check_key, closed_error
from .s3_config import S3Config, parse_s3_url

__all__ = ["S3Backend", "S3Config", "open_s3", "parse_s3_url"]

_log = logging.getLogger(__name__)

TOKEN_META = "cas-token"
CONFLICT_RETRIES = 8  # 409 ConditionalRequestConflict: another conditional write to the key is in flight
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_EXISTS_CODES = {"PreconditionFailed", "FileAlreadyExists"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                     "TokenRefreshRequired", "InvalidSecurity", "AuthorizationQueryParametersError"}
_REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                 "IncorrectEndpoint"}
_TRANSPORT_ERRORS = (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ConnectTimeoutError,
                     bx.ReadTimeoutError, bx.ResponseStreamingError, bx.IncompleteReadError,
                     bx.HTTPClientError)


def open_s3(url: str, **options) -> S3Backend:
    """Open the store an ``s3://`` URL names (options: ``cas.backends.s3_config.S3Config``)."""
    return S3Backend(parse_s3_url(url, **options))


class S3Backend(Backend):
    """See the module docstring. Thread-safe: boto3 clients are, once built."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.url = config.display_url
        self.max_workers = config.max_workers
        try:
            session = boto3.session.Session(profile_name=config.profile)
        except bx.ProfileNotFound:
            raise StoreMisconfigured(f"S3 store {self.url}: AWS profile {config.profile!r} is not in ~/.aws/config "
                                     "or ~/.aws/credentials; create it or fix profile=") from None
        self.region = config.region or session.region_name or "us-east-1"
        self._client = self._new_client(session, config.max_workers)
        self._lease_client = self._new_client(session, 2)  # heartbeats never queue behind chunks
        self._mode = config.create if config.create != "auto" else ("oss" if config.is_oss else "if-none-match")
        self._lock = threading.Lock()
        self._checked = False
        self._probed = False
        self._closed = False

    def _new_client(self, session, pool: int):
        cfg = self.config
        client = session.client(
            "s3",
            endpoint_url=cfg.endpoint,
            region_name=self.region,
            config=Config(
                # boto3 >= 1.36 adds CRC checksums by default, which many S3-compatible stores reject;
                # cas checks every chunk against its own digest.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=pool,
                connect_timeout=cfg.connect_timeout,
                read_timeout=cfg.timeout,
                retries={"mode": "standard", "total_max_attempts": cfg.retries + 1},
                s3={"addressing_style": cfg.addressing},
                user_agent_extra="cas",
            ),
        )
        client.meta.events.register("before-sign.s3.PutObject", self._add_create_header)
        return client

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r})"

    # -- names -------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        """The object name of a store key (refused, as by every backend, if it could leave the root)."""
        key = check_key(key)
        return self.config.key(key) if key else self.config.prefix

    def _dir(self, prefix: str) -> str:
        name = self._name(prefix)
        return f"{name}/" if name else ""

    def _client_for(self, key: str):
        return self._lease_client if key.split("/", 1)[0] == LOCKS else self._client

    # -- the first operation: is this a usable store? ---------------------------------------------

    def _ready(self) -> None:
        if self._closed:
            raise closed_error(self.url)
        if self._checked:
            return
        with self._lock:
            if not self._checked:
                self._check_store()
                self._checked = True

    def _check_store(self) -> None:
        cfg = self.config
        try:
            answer = self._client.list_objects_v2(Bucket=cfg.bucket, Prefix=self._dir(""), MaxKeys=1)
        except bx.ClientError as exc:
            raise self._misconfigured(exc) from None
        except (bx.NoCredentialsError, bx.PartialCredentialsError):
            raise self._no_credentials() from None
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, "", "list") from None
        except bx.BotoCoreError as exc:  # an answer botocore could not parse
            raise StoreMisconfigured(f"S3 store {self.url}: the endpoint {self._endpoint()} does not answer like S3 "
                                     f"({type(exc).__name__}); check endpoint=") from None
        if "KeyCount" not in answer and "IsTruncated" not in answer:
            raise StoreMisconfigured(f"S3 store {self.url}: the endpoint {self._endpoint()} does not answer like S3 "
                                     "(no listing in its answer); check endpoint=")

    def _misconfigured(self, exc: bx.ClientError) -> Exception:
        code, status, headers = _parts(exc)
        where = f"S3 store {self.url}"
        if code == "NoSuchBucket":
            return StoreMisconfigured(f"{where}: bucket {self.config.bucket!r} does not exist at {self._endpoint()}; "
                                      "create it, or fix the bucket name or endpoint= in the URL")
        bucket_region = headers.get("x-amz-bucket-region") or exc.response.get("Error", {}).get("Region")
        if code in _REGION_CODES or status == 301 or (bucket_region and bucket_region != self.region):
            hint = f"use region={bucket_region}" if bucket_region else "set region= to the bucket's region"
            return StoreMisconfigured(f"{where}: the bucket is not in region {self.region!r} ({code}); {hint}")
        if code in _CREDENTIAL_CODES:
            return StoreMisconfigured(f"{where}: the endpoint refused the credentials ({code}); check the AWS "
                                      "credentials cas found (AWS_ACCESS_KEY_ID/AWS_PROFILE, ~/.aws, instance role)")
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return StoreMisconfigured(f"{where}: access denied listing {self._dir('') or 'the bucket'} ({code}); cas needs "
                                      "s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on the prefix")
        if not code or code.isdigit() or status in (404, 405):
            return StoreMisconfigured(f"{where}: the endpoint {self._endpoint()} does not answer like S3 "
                                      f"(HTTP {status}); check endpoint=")
        if status >= 500:
            return ConnectionError(f"{where} kept failing to answer a listing (HTTP {status} {code}); "
                                   "check the service's status and try again")
        return StoreMisconfigured(f"{where}: the store refused a listing ({code}, HTTP {status}); check the URL")

    def _no_credentials(self) -> Exception:
        return StoreMisconfigured(f"S3 store {self.url}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, an AWS_PROFILE from ~/.aws, or run with an instance role")

    def _endpoint(self) -> str:
        return self.config.endpoint or f"AWS S3 ({self.region})"

    # -- exclusive create ---------------------------------------------------------------------------

    def _add_create_header(self, request, **_kwargs) -> None:
        if self._mode == "oss":
            request.headers["x-oss-forbid-overwrite"] = "true"

    def _put(self, client, name: str, data, token: str) -> None:
        extra = {"IfNoneMatch": "*"} if self._mode == "if-none-match" else {}
        client.put_object(Bucket=self.config.bucket, Key=name, Body=_BufferBody(data),
                          Metadata={TOKEN_META: token}, **extra)

    def _create(self, key: str, data, client) -> None:
        """One exclusive PUT, exactly once (see the module docstring); raises ClientError unmapped
        for refusals other than "exists"."""
        name = self._name(key)
        token = uuid.uuid4().hex
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._put(client, name, data, token)
                return
            except bx.ClientError as exc:
                code, status, _ = _parts(exc)
                if code in _EXISTS_CODES or status == 412:
                    if self._token(client, name, key) == token:
                        return  # our own earlier attempt landed; its answer was lost
                    raise FileExistsError(errno.EEXIST, f"object already exists: {key!r} in {self.url}", key) from None
                if code == "ConditionalRequestConflict" and attempt < CONFLICT_RETRIES:
                    time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** attempt)))
                    continue
                raise

    def _token(self, client, name: str, key: str) -> str | None:
        try:
            head = client.head_object(Bucket=self.config.bucket, Key=name)
        except bx.ClientError as exc:
            if _parts(exc)[0] in _MISSING_CODES:
                return None  # deleted meanwhile: it was not ours to keep anyway
            raise
        return head.get("Metadata", {}).get(TOKEN_META)

    def _probe(self) -> None:
        if self._probed:
            return
        with self._lock:
            if self._probed:
                return
            key = staging_key()  # a name gc sweeps, should the delete below fail
            try:
                self._probe_key(key)
            finally:
                try:
                    self._client.delete_object(Bucket=self.config.bucket, Key=self._name(key))
                except Exception as exc:  # noqa: BLE001 - a leftover under tmp/ is allowed; gc sweeps it
                    _log.warning("could not remove the probe object %s from %s: %s", key, self.url, exc)
            self._probed = True

    def _probe_key(self, key: str) -> None:
        where = f"S3 store {self.url}"
        try:
            self._create(key, b"cas probe 1", self._client)
        except bx.ClientError as exc:
            code, status, _ = _parts(exc)
            if (code == "NotImplemented" or status == 501) and self.config.create == "auto" and self._mode != "oss":
                self._mode = "oss"  # Aliyun OSS rejects If-None-Match; it has its own header
                return self._probe_key(key)
            if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
                raise StoreMisconfigured(f"{where}: may not write under {self._dir('') or 'the bucket root'} ({code}); "
                                         "grant s3:PutObject and s3:DeleteObject on the prefix, or choose another "
                                         "prefix") from None
            if code == "NotImplemented" or status == 501:
                raise StoreMisconfigured(f"{where}: the store does not implement exclusive create with "
                                         f"create={self._mode}; use a store with conditional writes "
                                         "(If-None-Match: *), or create=oss on Aliyun OSS") from None
            raise self._error(exc, key, "create") from None
        try:
            self._create(key, b"cas probe 2", self._client)
        except FileExistsError:
            return  # the store refused the overwrite: exclusive create works
        except bx.ClientError as exc:
            raise self._error(exc, key, "create") from None
        switch = "If-None-Match: *" if self._mode == "if-none-match" else "x-oss-forbid-overwrite: true"
        oss = (" Aliyun OSS ignores x-oss-forbid-overwrite while bucket versioning is enabled or suspended."
               if self._mode == "oss" else " On Aliyun OSS use create=oss (bucket versioning off).")
        raise StoreMisconfigured(f"{where}: the store overwrote an object despite {switch} (probe {key}), so "
                                 f"concurrent writers could overwrite versions and tags; cas refuses it.{oss}")

    # -- the contract -------------------------------------------------------------------------------

    def create(self, key: str, data) -> None:
        if check_key(key) == "":
            raise ValueError("cannot create an object at the store root")
        self._ready()
        self._probe()
        try:
            self._create(key, data, self._client_for(key))
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, key, "create") from None

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"read of {key!r}: offset and length must be >= 0, got {offset}, {length}")
        name = self._name(key)
        self._ready()
        if length == 0:
            if key in self.missing([key]):
                raise FileNotFoundError(errno.ENOENT, f"no object {key!r} in {self.url}", key)
            return b""
        if offset == 0 and length is None:
            extra = {}
        else:
            end = "" if length is None else str(offset + length - 1)
            extra = {"Range": f"bytes={offset}-{end}"}

        def request():
            try:
                return self._client_for(key).get_object(Bucket=self.config.bucket, Key=name, **extra)
            except bx.ClientError as exc:
                if _parts(exc)[0] == "InvalidRange" or _parts(exc)[1] == 416:
                    return None  # past the end
                raise

        def body(answer) -> bytes:
            if answer is None:
                return b""
            if extra and not answer.get("ContentRange"):
                # a store that ignored the Range sends the whole object (a 16 MiB pack for one
                # small chunk): read only as far as the range reaches, and cut the range out
                stream = answer["Body"]
                data = stream.read() if length is None else stream.read(offset + length)
                stream.close()
                return data[offset:]
            return answer["Body"].read() if length is None else answer["Body"].read(length)

        return self._reading(key, request, body)

    def read_into(self, key: str, buffer) -> int:
        """Read the whole object into ``buffer``; its length. BufferError (nothing read) if it does not fit."""
        name = self._name(key)
        self._ready()
        view = memoryview(buffer).cast("B")

        def consume(answer) -> int:
            body, size = answer["Body"], answer["ContentLength"]
            with body:
                if size > len(view):
                    raise BufferError(f"object {key!r} is {size} bytes, more than the {len(view)}-byte buffer")
                done = 0
                while done < size:
                    got = body.readinto(view[done:size])
                    if not got:
                        raise bx.IncompleteReadError(actual_bytes=done, expected_bytes=size)
                    done += got
            return size

        return self._reading(key, lambda: self._client.get_object(Bucket=self.config.bucket, Key=name), consume)

    def _reading(self, key: str, request, consume):
        """``consume(request())``. botocore has already retried the request itself; a body cut
        short (reset, stall, short read) is requested and read again here, ``retries`` times."""
        for attempt in range(self.config.retries + 1):
            try:
                answer = request()
            except (bx.ClientError, bx.BotoCoreError) as exc:
                raise self._error(exc, key, "read") from None
            try:
                return consume(answer)
            except (bx.ResponseStreamingError, bx.IncompleteReadError, bx.ReadTimeoutError,
                    bx.ConnectionClosedError) as exc:
                if attempt == self.config.retries:
                    raise self._unreachable(exc, key, "read", attempts=attempt + 1) from None
                _log.info("S3 read of %s cut short (%s); reading again", key, exc)
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
            except bx.BotoCoreError as exc:
                raise self._error(exc, key, "read") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def delete(self, key: str) -> bool:
        name = self._name(key)
        self._ready()
        client = self._client_for(key)
        try:
            if key in self._missing_some(client, [key]):
                return False
            client.delete_object(Bucket=self.config.bucket, Key=name)
            return True
        except (bx.ClientError, bx.BotoCoreError) as exc:
            raise self._error(exc, key, "delete") from None

    def move(self, src: str, dst: str) -> None:
        source, target = self._name(src), self._name(dst)
        self._ready()
        client = self._client_for(src)
        try:
            # a server-side copy (no bytes through this host); the copy's metadata token is the
            # source's, which only matters to a create of that key, and dst's content is the same
            client.copy_object(Bucket=self.config.bucket, Key=target,
                               CopySource={"Bucket": self.config.bucket, "Key": source})
        except (bx.ClientError, bx.BotoCoreError) as exc:
            raise self._error(exc, src, "move") from None
        try:
            client.delete_object(Bucket=self.config.bucket, Key=source)
        except (bx.ClientError, bx.BotoCoreError) as exc:
            raise self._error(exc, src, "move") from None

    def list(self, prefix: str) -> list[str]:
        start = self._dir(prefix)
        self._ready()
        names: set[str] = set()
        for page in self._pages(prefix, start, delimiter=True):
            names.update(item["Key"][len(start):] for item in page.get("Contents", ()))
            names.update(p["Prefix"][len(start):].rstrip("/") for p in page.get("CommonPrefixes", ()))
        names.discard("")
        return sorted(names)

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        start = self._dir(prefix)
        self._ready()
        strip = len(self._dir(""))

        def found(item) -> StoredObject:
            return StoredObject(item["Key"][strip:], int(item["Size"]), item["LastModified"].timestamp())

        subdirs = []
        for page in self._pages(prefix, start, delimiter=True):
            for item in page.get("Contents", ()):
                yield found(item)
            subdirs.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        if not subdirs:
            return

        def flat(sub: str) -> list[StoredObject]:
            return [found(item) for page in self._pages(prefix, sub, delimiter=False) for item in page.get("Contents", ())]

        with ThreadPoolExecutor(min(self.max_workers, len(subdirs)), thread_name_prefix="cas-s3-walk") as pool:
            for items in pool.map(flat, subdirs):
                yield from items

    def _pages(self, prefix: str, start: str, *, delimiter: bool):
        client = self._client_for(prefix)
        options = {"Bucket": self.config.bucket, "Prefix": start}
        if delimiter:
            options["Delimiter"] = "/"
        try:
            yield from client.get_paginator("list_objects_v2").paginate(**options)
        except (bx.ClientError, bx.BotoCoreError) as exc:
            raise self._error(exc, prefix, "list") from None

    def missing(self, keys: Iterable[str]) -> set[str]:
        keys = list(set(keys))
        for key in keys:
            self._name(key)
        if not keys:
            return set()
        self._ready()
        return self._missing_some(self._client, keys)

    def _missing_some(self, client, keys: list[str]) -> set[str]:
        def absent(key: str) -> bool:
            try:
                client.head_object(Bucket=self.config.bucket, Key=self._name(key))
                return False
            except bx.ClientError as exc:
                if _parts(exc)[0] in _MISSING_CODES:
                    return True
                raise self._error(exc, key, "check for") from None
            except bx.BotoCoreError as exc:
                raise self._error(exc, key, "check for") from None

        if len(keys) == 1:
            return set(keys) if absent(keys[0]) else set()
        with ThreadPoolExecutor(min(self.max_workers, len(keys)), thread_name_prefix="cas-s3-missing") as pool:
            return {key for key, gone in zip(keys, pool.map(absent, keys)) if gone}

    def flush(self) -> None:
        """Nothing to do: S3 answers a PUT once the object is durable."""
        if self._closed:
            raise closed_error(self.url)

    def close(self) -> None:
        self._closed = True
        self._client.close()
        self._lease_client.close()

    # -- error mapping: the one place ------------------------------------------------------------

    def _error(self, exc: BaseException, key: str, what: str) -> Exception:
        where = f"{what} {key!r} in {self.url}"
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return self._no_credentials()
        if isinstance(exc, _TRANSPORT_ERRORS):
            return self._unreachable(exc, key, what)
        if not isinstance(exc, bx.ClientError):
            return OSError(errno.EIO, f"S3 failed to {where}: {type(exc).__name__}: {exc}", key)
        code, status, _ = _parts(exc)
        if code == "NoSuchBucket" or code in _CREDENTIAL_CODES or code in _REGION_CODES:
            return self._misconfigured(exc)
        if code in _MISSING_CODES or status == 404:
            return FileNotFoundError(errno.ENOENT, f"no object to {where}", key)
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return PermissionError(errno.EACCES, f"access denied to {where} ({code}); check that the credentials' "
                                   "policy allows it on the bucket and prefix", key)
        if code in ("SlowDown", "ServiceUnavailable", "Throttling", "RequestTimeout") or status >= 500:
            attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
            return ConnectionError(f"S3 at {self._endpoint()} kept failing to {where} after {attempts} attempts "
                                   f"(HTTP {status} {code}); try again later, or lower the request rate "
                                   "(--workers, max_workers=)")
        if code == "EntityTooLarge":
            return OSError(errno.EFBIG, f"S3 refused to {where}: object too large", key)
        return OSError(errno.EIO, f"S3 answered HTTP {status} {code} to {where}", key)

    def _unreachable(self, exc: BaseException, key: str, what: str, *, attempts: int | None = None) -> Exception:
        tries = f" after {attempts} attempts" if attempts else ""
        reason = type(exc).__name__
        target = f"{key!r} in {self.url}" if key else self.url
        text = (f"could not {what} {target}{tries} ({reason}): check that {self._endpoint()} is reachable "
                "and serving S3")
        if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectTimeoutError)):
            return TimeoutError(errno.ETIMEDOUT, text)
        return ConnectionError(text)


def _parts(exc: bx.ClientError) -> tuple[str, int, dict]:
    """(error code, HTTP status, response headers) of a ClientError."""
    meta = exc.response.get("ResponseMetadata", {})
    return (str(exc.response.get("Error", {}).get("Code", "")), int(meta.get("HTTPStatusCode") or 0),
            meta.get("HTTPHeaders", {}))


class _BufferBody(io.RawIOBase):
    """A seekable file over a bytes-like object, so botocore sends (and re-sends on retry) a view
    of the caller's buffer without copying it whole (it reads it in small blocks)."""

    def __init__(self, data) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), len(self._view) - self._pos)
        b[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = self._view[self._pos:end].tobytes()
        self._pos = end
        return out

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos
