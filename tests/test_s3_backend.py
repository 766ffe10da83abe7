"""The S3 backend: the conformance suite against moto (and a real bucket with CAS_TEST_S3_URL),
exclusive create under races and lost answers, the overwrite probe, and one-line errors for bad
stores before any chunk is sent."""

from __future__ import annotations

import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cas import Store
from cas.backends import open_backend
from cas.backends.s3 import S3Backend
from cas.backends.s3_config import S3Config, parse_s3_url
from cas.errors import StoreMisconfigured
from cas.testing.conformance import BackendConformance, race_create
from cas.testing.s3_proxy import FaultProxy

from tests.conftest import s3_bucket_url, write

FAST = dict(retries=2, connect_timeout=1, timeout=2)


@pytest.fixture(autouse=True)
def aws_credentials():
    """Any credentials do for moto and the fake servers (real ones, if set, are left alone)."""
    from cas.testing.s3_server import ensure_test_credentials

    ensure_test_credentials()


def _raw_reader(client, bucket: str, prefix: str):
    def read(key):
        try:
            return client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    return read


# moto takes any credentials: these stand for a real secret key and session token, which must
# never show in a URL, a repr or a message (the token is a superstring of the secret).
SECRET = "cas-conformance-SECRET-4b9e"


class TestS3BackendOnMoto(BackendConformance):
    @pytest.fixture
    def backend(self, s3_server, monkeypatch):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "cas-conformance")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("AWS_SESSION_TOKEN", f"{SECRET}-session")
        backend = open_backend(s3_server.store_url(prefix="conf"))
        yield backend
        backend.close()

    @pytest.fixture
    def raw_read(self, backend, s3_server):
        return _raw_reader(s3_server.client(), backend.config.bucket, "conf")

    @pytest.fixture
    def raw_write(self, backend, s3_server):
        client = s3_server.client()
        return lambda key, data: client.put_object(Bucket=backend.config.bucket, Key=f"conf/{key}", Body=data)

    @pytest.fixture
    def credential(self):
        return SECRET


class TestS3BackendOnRealBucket(BackendConformance):
    @pytest.fixture
    def url(self):
        return s3_bucket_url(f"conformance-{uuid.uuid4().hex[:12]}")

    @pytest.fixture
    def backend(self, url):
        backend = open_backend(url)
        yield backend
        backend.close()
        cleaner = open_backend(url)  # the test may have closed the backend it was given
        for found in list(cleaner.walk("")):
            cleaner.delete(found.key)
        cleaner.close()

    @pytest.fixture
    def raw_read(self, backend):
        import boto3

        client = boto3.client("s3", endpoint_url=backend.config.endpoint, region_name=backend.region)
        return _raw_reader(client, backend.config.bucket, backend.config.prefix)

    @pytest.fixture
    def raw_write(self, backend):
        import boto3

        client = boto3.client("s3", endpoint_url=backend.config.endpoint, region_name=backend.region)
        return lambda key, data: client.put_object(Bucket=backend.config.bucket, Key=backend.config.key(key), Body=data)

    @pytest.fixture
    def refused_backend(self, url, monkeypatch):
        from cas.testing.conformance import WRONG_SECRET

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID") or "cas-conformance")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        refused = open_backend(url, retries=0)
        yield refused
        refused.close()


# -- URLs and options -------------------------------------------------------------------------


def test_url_becomes_a_typed_config():
    cfg = parse_s3_url("s3://my-bucket/models/cas?endpoint=http://127.0.0.1:9000/&region=eu-west-1"
                       "&addressing=path&create=oss&max_workers=4", retries=2)
    assert cfg == S3Config(bucket="my-bucket", prefix="models/cas", endpoint="http://127.0.0.1:9000",
                           region="eu-west-1", addressing="path", create="oss", max_workers=4, retries=2)
    assert cfg.display_url == "s3://my-bucket/models/cas?endpoint=http://127.0.0.1:9000&region=eu-west-1"
    assert parse_s3_url("s3://bucket").prefix == ""


@pytest.mark.parametrize("url, message", [
    ("s3://bucket/p?colour=blue", "unknown parameter 'colour'"),
    ("s3://bucket/p?addressing=sideways", "addressing must be one of"),
    ("s3://bucket/p?create=maybe", "create must be one of"),
    ("s3://bucket/p?max_workers=0", "max_workers must be"),
    ("s3://bucket/p?endpoint=ftp://host", "endpoint must be http"),
    ("s3://bucket/a//b", "empty, '.' or '..'"),
    ("s3://x/p", "is not a bucket name"),
    ("s3://bucket:9000/p", "has no port"),
    ("s3://bucket/p?region=us-east-1&region=eu-west-1", "twice"),
])
def test_bad_urls_are_refused_naming_the_problem(url, message):
    with pytest.raises(ValueError, match=message):
        open_backend(url)


def test_unknown_keyword_options_are_refused():
    with pytest.raises(TypeError, match="unknown option"):
        open_backend("s3://bucket/p", colour="blue")
    with pytest.raises(TypeError, match="both in the URL and as a keyword"):
        open_backend("s3://bucket/p?max_workers=3", max_workers=4)


@pytest.mark.parametrize("url", [
    "s3://AKIAEXAMPLE:s3cr3t-value@bucket/p",
    "s3://bucket/p?secret_key=s3cr3t-value",
    "s3://bucket/p?aws_access_key_id=AKIAEXAMPLE&aws_secret_access_key=s3cr3t-value",
    "s3://bucket/p?endpoint=http://AKIAEXAMPLE:s3cr3t-value@host:9000",
])
def test_credentials_in_the_url_are_refused_and_never_echoed(url):
    with pytest.raises(ValueError) as info:
        open_backend(url)
    assert "s3cr3t-value" not in str(info.value)
    assert "AWS chain" in str(info.value) or "credentials" in str(info.value)


# -- exclusive create --------------------------------------------------------------------------


def test_eight_threads_racing_one_create_have_exactly_one_winner_50_rounds(s3_server):
    backend = open_backend(s3_server.store_url(prefix="race"))
    raw = _raw_reader(s3_server.client(), backend.config.bucket, "race")
    n = 8
    try:
        for round_number in range(50):
            key = f"manifests/m/{round_number}.msgpack"
            results = race_create(backend, key, [f"writer {i}".encode() for i in range(n)])
            assert results.count("won") == 1, (round_number, results)
            assert results.count("lost") == n - 1, (round_number, results)
            assert raw(key) == f"writer {results.index('won')}".encode()
    finally:
        backend.close()


def test_a_lost_answer_to_the_manifest_put_makes_exactly_one_version(s3_server, tmp_path):
    """The proxy lets the first manifest PUT land upstream and drops its answer; botocore
    retries, S3 answers 412 for our own object, and the token in its metadata tells us so."""
    model = write(tmp_path / "model.bin", os.urandom(300_000))
    url = s3_server.store_url(prefix="lost")
    bucket = parse_s3_url(url).bucket
    with FaultProxy(s3_server.endpoint) as proxy:
        proxy.add("drop_answer", method="PUT", path_contains="/manifests/resnet/")
        proxied = url.replace(s3_server.endpoint, proxy.endpoint)
        with Store.open(proxied, cache_dir=False, n_workers=4) as store:
            m = store.put(str(model), "resnet")
        assert proxy.hits["drop_answer"] == 1
        assert sum(1 for method, path in proxy.requests if method == "PUT" and "/manifests/resnet/" in path) == 2
    assert m.version == "1"
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="lost/manifests/")
    assert [o["Key"] for o in listing["Contents"]] == ["lost/manifests/resnet/1.msgpack"]
    with Store.open(url, cache_dir=False) as store:
        assert store.versions("resnet") == ["1"] and store.tags("resnet") == {"latest": "1"}
        store.get("resnet", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == model.read_bytes()


def test_a_store_that_overwrites_is_refused_by_the_probe(s3_server):
    # moto ignores Aliyun's x-oss-forbid-overwrite header: exactly a store that would overwrite.
    backend = open_backend(s3_server.store_url(prefix="oss", create="oss"))
    try:
        with pytest.raises(StoreMisconfigured, match="overwrote an object despite x-oss-forbid-overwrite.*versioning"):
            backend.create("locks/writer.x.00000001", b"lease")
        assert list(backend.walk("")) == []  # the probe cleaned up; nothing was written
    finally:
        backend.close()


def test_a_conditional_write_conflict_is_retried(s3_server):
    """409 ConditionalRequestConflict means "another conditional write is in flight": try again."""
    url = s3_server.store_url(prefix="conflict")
    with ConflictOnce(s3_server.endpoint) as proxy:
        backend = open_backend(url.replace(s3_server.endpoint, proxy.endpoint))
        try:
            backend.create("k", b"value")
            assert backend.read("k") == b"value"
        finally:
            backend.close()
        assert proxy.conflicts == 1


class ConflictOnce(FaultProxy):
    """Answers the first PUT of key ``k`` with 409 ConditionalRequestConflict."""

    def __init__(self, upstream):
        super().__init__(upstream)
        self.conflicts = 0
        owner = self
        base = self._server.RequestHandlerClass

        class Handler(base):
            def do_PUT(self):
                if self.path.endswith("/conflict/k") and owner.conflicts == 0:
                    owner.conflicts += 1
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    body = b"<Error><Code>ConditionalRequestConflict</Code><Message>retry</Message></Error>"
                    self.send_response(409)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_PUT()

        self._server.RequestHandlerClass = Handler


# -- bad stores: one line naming the store and what to do -------------------------------------------


def test_a_bucket_that_does_not_exist_is_named(s3_server, tmp_path):
    url = s3_server.store_url(bucket="no-such-bucket", prefix="p")
    with Store.open(url, cache_dir=False) as store:
        with pytest.raises(StoreMisconfigured, match=r"bucket 'no-such-bucket' does not exist at http://127\.0\.0\.1"):
            store.put(str(write(tmp_path / "f", b"x" * 1000)), "m")
        with pytest.raises(StoreMisconfigured, match="does not exist"):
            store.models()


def test_an_endpoint_that_is_not_s3_is_named(webhdfs_server):
    backend = open_backend(f"s3://bucket/p?endpoint={webhdfs_server.namenode_url}&addressing=path", **FAST)
    with pytest.raises(StoreMisconfigured, match="does not answer like S3"):
        backend.list("manifests")


class FakeS3:
    """A loopback server answering every request of one method with one S3 error."""

    def __init__(self, answers: dict[str, tuple[int, str, dict]]):
        fake = self
        self.answers = answers
        self.requests: list[tuple[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append((self.command, self.path))
                status, code, headers = fake.answers.get(self.command, (200, "", {}))
                if status == 200 and self.command == "GET" and "list-type" not in self.path:
                    status, code, headers = 404, "NoSuchKey", {}  # an object GET: the bucket is empty
                if status == 200 and self.command == "GET":
                    body = (b'<?xml version="1.0"?><ListBucketResult><Name>b</Name><KeyCount>0</KeyCount>'
                            b"<IsTruncated>false</IsTruncated></ListBucketResult>")
                else:
                    body = f"<Error><Code>{code}</Code><Message>fake</Message></Error>".encode() if code else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"s3://bucket/p?endpoint=http://127.0.0.1:{self.server.server_address[1]}&addressing=path&region=us-east-1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("answers, message", [
    ({"GET": (403, "InvalidAccessKeyId", {})}, "refused the credentials.*AWS_ACCESS_KEY_ID"),
    ({"GET": (403, "SignatureDoesNotMatch", {})}, "refused the credentials"),
    ({"GET": (301, "PermanentRedirect", {"x-amz-bucket-region": "eu-west-1"})}, "use region=eu-west-1"),
    ({"GET": (400, "AuthorizationHeaderMalformed", {})}, "not in region 'us-east-1'"),
    ({"GET": (403, "AccessDenied", {})}, "access denied listing p/.*s3:ListBucket"),
    ({"PUT": (403, "AccessDenied", {})}, "may not write under p/"),
])
def test_bad_stores_fail_with_one_line_before_any_chunk_is_sent(answers, message, tmp_path):
    fake = FakeS3(answers)
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    try:
        with Store.open(fake.url, cache_dir=False, retries=0) as store:
            with pytest.raises(StoreMisconfigured, match=message) as info:
                store.put(str(write(tmp_path / "model.bin", os.urandom(50_000))), "m")
        text = str(info.value)
        assert "\n" not in text and "s3://bucket/p" in text
        assert not secret or secret not in text
        assert not [p for m, p in fake.requests if m == "PUT" and "/chunks/" in p]
    finally:
        fake.close()


def test_403_on_head_is_never_taken_for_missing():
    fake = FakeS3({"HEAD": (403, "", {})})
    try:
        backend = open_backend(fake.url, retries=0)
        with pytest.raises(PermissionError, match="access denied to check for 'chunks/(aa|bb)'"):
            backend.missing(["chunks/aa", "chunks/bb"])
    finally:
        fake.close()


def test_slowdown_is_retried_and_a_persistent_one_names_the_key(s3_server):
    url = s3_server.store_url(prefix="slow")
    with FaultProxy(s3_server.endpoint) as proxy:
        backend = open_backend(url.replace(s3_server.endpoint, proxy.endpoint), retries=2)
        try:
            backend.create("a", b"1")
            proxy.add("slowdown", method="GET", path_contains="/slow/a", times=1)
            assert backend.read("a") == b"1"
            proxy.add("slowdown", method="GET", path_contains="/slow/a", times=10)
            with pytest.raises(ConnectionError, match="kept failing to read 'a'.*after 3 attempts.*503 SlowDown"):
                backend.read("a")
        finally:
            backend.close()


def test_a_body_cut_short_is_read_again(s3_server):
    url = s3_server.store_url(prefix="cut")
    data = os.urandom(1 << 20)
    with FaultProxy(s3_server.endpoint) as proxy:
        backend = open_backend(url.replace(s3_server.endpoint, proxy.endpoint), retries=2)
        try:
            backend.create("obj", data)
            proxy.add("cut_body", method="GET", path_contains="/cut/obj", times=2)
            assert backend.read("obj") == data
            proxy.add("cut_body", method="GET", path_contains="/cut/obj", times=1)
            buf = bytearray(2 << 20)
            assert backend.read_into("obj", buf) == len(data) and bytes(buf[: len(data)]) == data
        finally:
            backend.close()


def test_lease_objects_use_their_own_connection_pool(s3_server):
    backend = open_backend(s3_server.store_url(prefix="pools"), max_workers=2)
    assert isinstance(backend, S3Backend)
    try:
        backend.create("chunks/aa/bb/x", b"c")
        backend.create("locks/writer.o.00000001", b"l")
        assert backend._client_for("locks/writer.o.00000002") is not backend._client_for("chunks/aa/bb/x")
        assert backend.list("locks") == ["writer.o.00000001"]
    finally:
        backend.close()


def test_use_after_close_is_refused(s3_server):
    backend = open_backend(s3_server.store_url(prefix="closed"))
    backend.create("k", b"v")
    backend.close()
    with pytest.raises(ValueError, match="closed"):
        backend.read("k")


def test_cli_put_get_rm_gc_verify_on_s3(s3_server, tmp_path, monkeypatch, capsys):
    import json

    from cas.cli import main

    monkeypatch.setenv("CAS_CACHE_DIR", str(tmp_path / "cache"))
    url = s3_server.store_url()
    v1 = write(tmp_path / "v1.bin", os.urandom(3 << 20))
    v2 = write(tmp_path / "v2.bin", v1.read_bytes()[: 2 << 20] + os.urandom(1 << 20))

    def cas(*args):
        code = main(["--store", url, *args])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out) if "--json" in args else out

    assert cas("put", str(v1), "net", "--chunk-size", "1MiB", "--json")["sent_chunks"] == 3
    assert cas("put", str(v2), "net", "--chunk-size", "1MiB", "--json")["sent_chunks"] == 1
    assert cas("get", "net@1", str(tmp_path / "back1.bin"), "--json")["fetched_bytes"] == 3 << 20
    assert (tmp_path / "back1.bin").read_bytes() == v1.read_bytes()
    assert cas("verify", "--full", "--json")["problems"] == []
    cas("rm", "net@1")
    report = cas("gc", "--grace", "0", "--json")
    assert report["deleted_chunks"] == 1 and report["referenced_chunks"] == 3
    assert cas("verify", "--full", "--json")["problems"] == []
    cas("get", "net", str(tmp_path / "back2.bin"))
    assert (tmp_path / "back2.bin").read_bytes() == v2.read_bytes()
    assert cas("ls").startswith("net\t1 version\t")


def test_timeouts_and_retries_can_be_set_in_the_url():
    cfg = parse_s3_url("s3://bucket/p?retries=1&timeout=2.5&connect_timeout=3")
    assert (cfg.retries, cfg.timeout, cfg.connect_timeout) == (1, 2.5, 3.0)
    with pytest.raises(ValueError, match="timeout must be a number of seconds"):
        parse_s3_url("s3://bucket/p?timeout=soon")


def test_an_unreachable_endpoint_is_one_line_naming_the_store():
    backend = open_backend("s3://bucket/p?endpoint=http://127.0.0.1:1&retries=0&connect_timeout=1")
    with pytest.raises(ConnectionError, match=r"could not list s3://bucket/p\?endpoint=http://127.0.0.1:1 .*reachable"):
        backend.list("manifests")


def test_no_credentials_anywhere_is_one_line(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    fake = FakeS3({})
    try:
        with pytest.raises(StoreMisconfigured, match="no AWS credentials found; set AWS_ACCESS_KEY_ID"):
            open_backend(fake.url, retries=0).list("manifests")
        assert fake.requests == []
    finally:
        fake.close()


def test_a_ranged_read_from_a_store_that_ignores_range_returns_just_the_range(tmp_path, s3_server):
    """Packed chunks are read by range; a store that answers 200 with the whole object must not
    make a read return (or hold) the whole pack."""
    from cas.backends.s3 import open_s3

    url = s3_server.store_url(prefix="ranges")
    data = os.urandom(3 << 20)
    with FaultProxy(s3_server.endpoint) as proxy:
        backend = open_s3(url.replace(s3_server.endpoint, proxy.endpoint))
        try:
            backend.create("packs/ab/cd/abcd", data)
            proxy.add("ignore_range", method="GET", path_contains="/packs/", times=None)
            assert backend.read("packs/ab/cd/abcd", 1000, 5000) == data[1000:6000]
            assert backend.read("packs/ab/cd/abcd", (3 << 20) - 10) == data[-10:]
            assert proxy.hits["ignore_range"] == 2
        finally:
            backend.close()
