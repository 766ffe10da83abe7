"""The WebHDFS backend: the conformance suite against the emulated server (and against a real
cluster when CAS_TEST_WEBHDFS_URL is set), then URL parsing, retries, error mapping and the
number of requests each operation costs, read from the server's request log."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from cas.backends import open_backend
from cas.backends.webhdfs import WebHdfsBackend, open_webhdfs, parse_webhdfs_url
from cas.testing.conformance import BackendConformance
from cas.testing.webhdfs_server import WebHdfsServer

# Fast failure handling for tests: small waits, few retries, short socket timeouts.
FAST = dict(timeout=0.5, connect_timeout=0.5, retries=3, backoff=0.01, backoff_max=0.05)
_roots = itertools.count()
TOKEN = "SEKRIT-delegation-0123456789"


@pytest.fixture(scope="module")
def server():
    with WebHdfsServer() as srv:
        yield srv


@pytest.fixture
def root(server):
    """A fresh store root per test on the shared server."""
    server.clear_faults()
    path = f"/cas/t{next(_roots)}"
    yield path
    server.clear_faults()


def _open(server, root, user="cas", **options):
    return open_backend(server.store_url(root, "cas").replace("user=cas", f"user={user}"), **options)


@pytest.fixture
def store(server, root):
    """A backend with fast retries and a cleared request log."""
    backend = _open(server, root, **FAST)
    server.reset_log()
    yield backend
    backend.close()


def ops(server, *, node=None):
    """Counter of (node, op) in the request log."""
    return Counter((n, op) for _m, n, op, _p in server.request_log if node is None or n == node)


def sequence(server):
    return [(n, op) for _m, n, op, _p in server.request_log]


def tmp_files(server, root):
    """Everything left under the store's tmp/, listed through a second backend."""
    backend = _open(server, root)
    try:
        return [o.key for o in backend.walk("tmp")]
    finally:
        backend.close()


# -- conformance ------------------------------------------------------------------------------


class TestWebHdfsBackend(BackendConformance):
    """With a delegation token in the URL, so the suite also checks that it never shows."""

    @pytest.fixture
    def backend(self, server, root):
        server.tokens[TOKEN] = "cas"
        backend = open_backend(server.store_url(root, "cas").split("?")[0] + f"?token={TOKEN}",
                               timeout=10, retries=2, backoff=0.01)
        yield backend
        backend.close()

    @pytest.fixture
    def raw_read(self, server, backend):
        return lambda key: server.raw_read(f"{backend.root}/{key}")

    @pytest.fixture
    def raw_write(self, server, backend):
        return lambda key, data: server.raw_write(f"{backend.root}/{key}", data)

    @pytest.fixture
    def credential(self):
        return TOKEN

    @pytest.fixture
    def refused_backend(self, server, root):
        from cas.testing.conformance import WRONG_SECRET

        backend = open_backend(server.store_url(root, "cas").split("?")[0] + f"?token={WRONG_SECRET}", **FAST)
        yield backend
        backend.close()


REAL_URL = os.environ.get("CAS_TEST_WEBHDFS_URL")


@pytest.mark.skipif(not REAL_URL, reason="set CAS_TEST_WEBHDFS_URL=webhdfs://nn:9870/tmp/cas-test?user=me to run")
class TestWebHdfsBackendOnRealCluster(BackendConformance):
    @pytest.fixture
    def backend(self):
        from hdfs import InsecureClient

        parsed = parse_webhdfs_url(REAL_URL)
        sub_root = f"{parsed.root}/{uuid.uuid4().hex}"
        parts = urlsplit(REAL_URL)
        backend = open_backend(urlunsplit(parts._replace(path=sub_root)))
        yield backend
        backend.close()
        InsecureClient(";".join(parsed.namenodes), user=parsed.user, timeout=60).delete(sub_root, recursive=True)

    @pytest.fixture
    def raw_read(self, backend):
        from hdfs import HdfsError, InsecureClient

        parsed = parse_webhdfs_url(REAL_URL)
        client = InsecureClient(";".join(parsed.namenodes), user=parsed.user, timeout=60)

        def read(key):
            try:
                with client.read(f"{backend.root}/{key}") as reader:
                    return reader.read()
            except HdfsError as exc:
                if exc.exception == "FileNotFoundException":
                    return None
                raise

        return read

    @pytest.fixture
    def raw_write(self, backend):
        from hdfs import InsecureClient

        parsed = parse_webhdfs_url(REAL_URL)
        client = InsecureClient(";".join(parsed.namenodes), user=parsed.user, timeout=60)
        return lambda key, data: client.write(f"{backend.root}/{key}", data=data)


# -- URL grammar and options ----------------------------------------------------------------------


def test_url_defaults_port_and_keeps_root():
    parsed = parse_webhdfs_url("webhdfs://nn.example/models/cas?user=me")
    assert parsed.namenodes == ("http://nn.example:9870",)
    assert parsed.root == "/models/cas"
    assert parsed.user == "me" and parsed.auth == "simple"
    assert parse_webhdfs_url("swebhdfs://nn/x").namenodes == ("https://nn:9871",)


def test_url_with_several_namenodes_becomes_hdfscli_ha_url():
    backend = open_webhdfs("webhdfs://nn1:8020,nn2:8021,[::1]:9/a/b?user=me")
    assert backend.namenodes == ["http://nn1:8020", "http://nn2:8021", "http://[::1]:9"]
    assert backend.client.hdfscli.url == "http://nn1:8020;http://nn2:8021;http://[::1]:9"
    assert type(backend.client.hdfscli).__name__ == "InsecureClient"
    assert backend.client.hdfscli._session is backend.client.session
    assert backend.client.session.params["user.name"] == "me"
    assert backend.url == "webhdfs://nn1:8020,nn2:8021,[::1]:9/a/b?user=me"
    assert backend.root == "/a/b"


def test_swebhdfs_uses_https_and_token_auth_keeps_the_token_out_of_the_url():
    backend = open_webhdfs("swebhdfs://nn:50470/cas?token=SECRET", verify=False)
    assert backend.namenodes == ["https://nn:50470"]
    assert type(backend.client.hdfscli).__name__ == "TokenClient"
    assert backend.client.session.params == {"delegation": "SECRET"}
    assert backend.client.session.verify is False
    assert "SECRET" not in backend.url and "SECRET" not in repr(backend)


def test_kerberos_auth_is_an_optional_extra():
    try:
        import requests_kerberos  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="requests-kerberos"):
            open_webhdfs("webhdfs://nn:9870/cas?auth=kerberos")
    else:
        backend = open_webhdfs("webhdfs://nn:9870/cas?auth=kerberos")
        assert type(backend.client.hdfscli).__name__ == "KerberosClient"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("webhdfs://nn:9870/cas?user=me&colour=blue", "colour"),
        ("webhdfs://nn:9870/cas?user=me&timeout=0", "timeout must be a positive number"),
        ("webhdfs://nn:9870/cas?user=me&retries=x", "retries must be a whole number"),
        ("webhdfs://nn:9870/cas?auth=token", "auth=token needs the delegation token"),
        ("webhdfs://nn:9870/cas?user=me&token=t", "token= cannot be combined|user= is for simple"),
        ("webhdfs://nn:9870/cas?auth=ntlm", "ntlm"),
        ("webhdfs://nn:9870?user=me", "no store root"),
        ("webhdfs://nn:9870/?user=me", "no store root"),
        ("webhdfs://me@nn:9870/cas", "user info"),
        ("webhdfs://nn:x/cas", "bad port"),
        ("webhdfs://nn1,,nn2/cas", "empty host"),
        ("webhdfs://nn/a:b/cas", "':'"),
        ("webhdfs://nn/cas?user=a&user=b", "twice"),
    ],
)
def test_bad_urls_are_rejected_naming_the_problem(url, message):
    with pytest.raises(ValueError, match=message):
        open_webhdfs(url)


def test_unknown_and_bad_options_are_rejected():
    with pytest.raises(TypeError, match="colour"):
        open_backend("webhdfs://nn:9870/cas?user=me", colour="blue")
    with pytest.raises(ValueError, match="max_workers"):
        open_webhdfs("webhdfs://nn:9870/cas?user=me", max_workers=0)
    with pytest.raises(ValueError, match="timeout"):
        open_webhdfs("webhdfs://nn:9870/cas?user=me", timeout=0)


def test_connection_pool_matches_max_workers_and_every_request_has_a_timeout():
    backend = open_webhdfs("webhdfs://nn:9870/cas?user=me", max_workers=3, timeout=7, connect_timeout=2)
    assert backend.max_workers == 3
    adapter = backend.client.session.get_adapter("http://nn:9870/")
    assert adapter._pool_maxsize == 3
    assert adapter.max_retries.total == 0  # retries are ours, not urllib3's
    assert backend.client.timeouts == (2, 7)
    assert open_webhdfs("webhdfs://nn:9870/cas?user=me").max_workers == 8


def test_every_option_is_a_url_parameter_or_a_keyword_with_one_default():
    from_url = parse_webhdfs_url("webhdfs://nn/cas?user=me&replication=2&max_workers=3&timeout=7&connect_timeout=2"
                                 "&retries=1&backoff=0.1&backoff_max=1&min_rate=1000&verify=false")
    from_keywords = parse_webhdfs_url("webhdfs://nn/cas", user="me", replication=2, max_workers=3, timeout=7,
                                      connect_timeout=2, retries=1, backoff=0.1, backoff_max=1, min_rate=1000,
                                      verify=False)
    assert from_url == from_keywords
    assert from_url.timeouts == (2.0, 7.0) and from_url.verify is False
    assert parse_webhdfs_url("swebhdfs://nn/cas?verify=/etc/ca.pem").verify == "/etc/ca.pem"
    defaults = parse_webhdfs_url("webhdfs://nn/cas?user=me")
    assert (defaults.max_workers, defaults.timeout, defaults.connect_timeout, defaults.retries, defaults.backoff,
            defaults.backoff_max, defaults.min_rate, defaults.verify, defaults.replication) == (
        8, 60.0, 10.0, 5, 0.5, 10.0, 262144.0, True, None)
    backend = open_webhdfs("webhdfs://nn/cas?user=me&max_workers=3")
    assert backend.config == parse_webhdfs_url("webhdfs://nn/cas?user=me", max_workers=3)
    with pytest.raises(TypeError, match="max_workers given both in the URL and as a keyword"):
        parse_webhdfs_url("webhdfs://nn/cas?max_workers=3", max_workers=4)


def test_a_delegation_token_may_be_a_keyword_and_never_shows_in_the_config():
    config = parse_webhdfs_url("webhdfs://nn/cas", token=TOKEN)
    assert config.auth == "token" and config.user is None
    assert TOKEN not in repr(config) and TOKEN not in config.display_url
    assert config == parse_webhdfs_url(f"webhdfs://nn/cas?token={TOKEN}")


@pytest.mark.parametrize("url", [
    f"webhdfs://me:{TOKEN}@nn:9870/cas",
    f"webhdfs://nn:9870/cas?user=me&password={TOKEN}",
    f"webhdfs://nn:9870/cas?delegation={TOKEN}",
    f"webhdfs://nn:9870/cas?user=me&secret_key={TOKEN}",
])
def test_credentials_in_the_url_are_refused_naming_them_without_echoing_them(url):
    with pytest.raises(ValueError, match="user info|credential-like parameter") as info:
        open_webhdfs(url)
    assert TOKEN not in str(info.value)
    assert "\n" not in str(info.value)


def test_keys_cannot_escape_the_root(store):
    for key in ("../x", "a/../../x", "a//b", "./a"):
        with pytest.raises(ValueError):
            store.read(key)


# -- request counts ------------------------------------------------------------------------------


def test_create_costs_three_requests_or_four_with_a_new_parent(server, store):
    store.create("d/k1", b"one")
    assert sequence(server) == [
        ("namenode", "MKDIRS"),
        ("namenode", "CREATE"),
        ("datanode", "CREATE"),
        ("namenode", "RENAME"),
    ]
    server.reset_log()
    store.create("d/k2", b"two")
    assert sequence(server) == [
        ("namenode", "CREATE"),
        ("datanode", "CREATE"),
        ("namenode", "RENAME"),
    ]
    # the staged file was written with overwrite=false under tmp/, never at the final name
    creates = [p for m, n, op, p in server.request_log if op == "CREATE"]
    assert all(p.startswith(f"{store.root}/tmp/") for p in creates)


def test_read_costs_two_requests(server, store):
    store.create("r", b"0123456789")
    server.reset_log()
    assert store.read("r", 2, 3) == b"234"
    assert sequence(server) == [("namenode", "OPEN"), ("datanode", "OPEN")]


def test_missing_costs_one_request_per_parent_and_teaches_create_its_parents(server, store):
    for key in ("c/00/a", "c/00/b", "c/11/x"):
        store.create(key, b"v")
    server.reset_log()
    asked = ["c/00/a", "c/00/b", "c/00/z", "c/11/x", "c/22/y", "c/33/p", "c/33/q"]
    assert store.missing(asked) == {"c/00/z", "c/22/y", "c/33/p", "c/33/q"}
    assert ops(server) == Counter({
        ("namenode", "LISTSTATUS"): 2,  # c/00 (3 keys) and c/33 (2 keys; a 404: all missing)
        ("namenode", "GETFILESTATUS"): 2,  # the lone keys in c/11 and c/22
    })
    server.reset_log()
    store.create("c/00/z", b"v")  # c/00 was listed: known to exist, no MKDIRS
    assert ops(server)[("namenode", "MKDIRS")] == 0


# -- retries on transient failures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "retried"),
    [
        (dict(kind="refuse", op="MKDIRS"), ("namenode", "MKDIRS")),
        (dict(kind="refuse", op="CREATE", node="namenode"), ("namenode", "CREATE")),
        (dict(kind="refuse", op="CREATE", node="datanode"), ("datanode", "CREATE")),
        (dict(kind="status", code=503, op="CREATE", node="datanode"), ("datanode", "CREATE")),
        (dict(kind="status", code=500, op="MKDIRS"), ("namenode", "MKDIRS")),
        (dict(kind="status", code=503, op="RENAME"), ("namenode", "RENAME")),
        (dict(kind="cut_upload", op="CREATE"), ("datanode", "CREATE")),
        (dict(kind="stall", seconds=2.0, op="CREATE", node="namenode"), ("namenode", "CREATE")),
        (dict(kind="stall", seconds=2.0, op="CREATE", node="datanode"), ("datanode", "CREATE")),
    ],
    ids=lambda v: "-".join(str(x) for x in v.values()) if isinstance(v, dict) else None,
)
def test_create_survives_a_transient_fault(server, root, store, fault, retried):
    data = os.urandom(300_000)
    injected = server.inject(fault.pop("kind"), **fault)
    store.create("obj", data)
    assert injected.hits == 1
    assert ops(server)[retried] >= 2
    assert server.raw_read(f"{root}/obj") == data
    assert tmp_files(server, root) == []


def test_a_lost_rename_answer_is_success_not_file_exists(server, root, store):
    """The RENAME runs, then its answer is lost: the retried RENAME says false, and the
    destination holding our bytes (with our staged file gone) is our own success."""
    data = os.urandom(50_000)
    server.inject("cut_response", op="RENAME")
    store.create("once", data)
    assert ops(server)[("namenode", "RENAME")] == 2
    assert ops(server)[("datanode", "CREATE")] == 1  # not staged twice
    assert server.raw_read(f"{root}/once") == data
    assert tmp_files(server, root) == []


def test_a_lost_rename_answer_with_someone_elses_object_is_file_exists(server, root, store, monkeypatch):
    """Same lost answer, but the RENAME had failed (destination taken): not our success."""
    real_stage = store._stage

    def stage_then_lose_race(staged, data, key):
        real_stage(staged, data, key)
        server.raw_write(f"{root}/{key}", b"theirs")

    monkeypatch.setattr(store, "_stage", stage_then_lose_race)
    server.inject("cut_response", op="RENAME")
    with pytest.raises(FileExistsError):
        store.create("taken", b"ours")
    assert server.raw_read(f"{root}/taken") == b"theirs"
    assert tmp_files(server, root) == []


@pytest.mark.parametrize(
    "fault",
    [
        dict(kind="refuse", op="OPEN", node="namenode"),
        dict(kind="refuse", op="OPEN", node="datanode"),
        dict(kind="status", code=503, op="OPEN", node="namenode"),
        dict(kind="cut_response", op="OPEN", node="datanode"),
        dict(kind="stall", seconds=2.0, op="OPEN", node="datanode"),
    ],
    ids=lambda v: "-".join(str(x) for x in v.values()),
)
def test_read_survives_a_transient_fault(server, root, store, fault):
    data = os.urandom(200_000)
    server.raw_write(f"{root}/obj", data)
    injected = server.inject(fault.pop("kind"), **fault)
    assert store.read("obj") == data
    assert store.read("obj", 1000, 5000) == data[1000:6000]
    assert injected.hits == 1
    assert ops(server)[("namenode", "OPEN")] == 3


def test_list_walk_missing_delete_survive_transient_faults(server, root, store):
    server.raw_write(f"{root}/d/a", b"1")
    server.raw_write(f"{root}/d/b", b"22")
    server.inject("status", code=503, op="LISTSTATUS", times=3)
    assert store.list("d") == ["a", "b"]
    assert sorted((o.key, o.size) for o in store.walk("d")) == [("d/a", 1), ("d/b", 2)]
    assert store.missing(["d/a", "d/b", "d/c"]) == {"d/c"}
    server.inject("refuse", op="DELETE")
    assert store.delete("d/a") is True
    assert ops(server)[("namenode", "LISTSTATUS")] == 6


def test_datanode_down_then_up(server, root):
    store = _open(server, root, timeout=0.5, connect_timeout=0.5, retries=12, backoff=0.05, backoff_max=0.1)
    server.raw_write(f"{root}/obj", b"payload")
    server.datanode_down(0)
    timer = threading.Timer(0.4, server.datanode_up, args=(0,))
    timer.start()
    try:
        started = time.monotonic()
        assert store.read("obj") == b"payload"
        store.create("new", b"more")
        assert time.monotonic() - started >= 0.3
    finally:
        timer.join()
        server.datanode_up(0)
    assert server.raw_read(f"{root}/new") == b"more"


# -- answers that mean "no" are not retried --------------------------------------------------------


def test_permission_denied_is_not_retried(server, root):
    _open(server, root).create("mine/obj", b"x")  # root and mine/ belong to cas, mode 755
    intruder = _open(server, root, user="mallory", **FAST)
    server.reset_log()
    with pytest.raises(PermissionError, match="mallory") as info:
        intruder.create("mine/other", b"y")
    assert info.value.filename == "mine/other"
    counts = ops(server)
    # one attempt: the DataNode's refusal (or, if it surfaced as a reset, the empty-bodied
    # probe that turns it into a clean 403) ends it; a retry loop would show 4 of each
    assert counts[("namenode", "CREATE")] <= 2 and counts[("datanode", "CREATE")] <= 2
    assert counts[("namenode", "RENAME")] == 0
    with pytest.raises(PermissionError):
        intruder.delete("mine/obj")
    assert server.raw_read(f"{root}/mine/obj") == b"x"


def test_permission_denied_on_delete_and_injected_403_are_not_retried(server, root, store):
    server.raw_write(f"{root}/f", b"x")
    server.inject("status", code=403, exception="AccessControlException", message="Permission denied: user=cas")
    with pytest.raises(PermissionError):
        store.read("f")
    assert ops(server)[("namenode", "OPEN")] == 1


def test_not_found_is_not_retried(server, store):
    with pytest.raises(FileNotFoundError) as info:
        store.read("no/such/key")
    assert info.value.filename == "no/such/key"
    assert sequence(server) == [("namenode", "OPEN")]
    assert store.delete("no/such/key") is False
    assert store.list("no/such") == []
    assert list(store.walk("no")) == []


def test_bad_request_is_not_retried(server, store):
    server.inject("status", code=400, exception="IllegalArgumentException", message="Invalid value")
    with pytest.raises(ValueError, match="Invalid value"):
        store.list("x")
    assert len(server.request_log) == 1


def test_persistent_5xx_gives_connection_error_after_bounded_attempts(server, store):
    server.inject("status", code=503, op="GETFILESTATUS", times=None)
    with pytest.raises(ConnectionError, match="503") as info:
        store.missing(["lonely/key"])
    assert "lonely/key" in str(info.value)
    assert ops(server)[("namenode", "GETFILESTATUS")] == FAST["retries"] + 1


# -- create's HDFS rules -------------------------------------------------------------------------


def test_rename_onto_a_taken_destination_is_file_exists_and_leaves_no_tmp(server, root, store, monkeypatch):
    real_stage = store._stage

    def stage_then_lose_race(staged, data, key):
        real_stage(staged, data, key)
        server.raw_write(f"{root}/{key}", b"winner")  # another writer publishes first

    monkeypatch.setattr(store, "_stage", stage_then_lose_race)
    with pytest.raises(FileExistsError) as info:
        store.create("race/k", b"loser")
    assert info.value.filename == "race/k"
    assert server.raw_read(f"{root}/race/k") == b"winner"
    assert tmp_files(server, root) == []
    assert ops(server)[("namenode", "RENAME")] == 1


def test_rename_into_a_vanished_parent_makes_it_and_retries_once(server, root, store):
    store.create("p/first", b"1")  # p/ is now a known parent
    server.raw_delete(f"{root}/p")
    server.reset_log()
    store.create("p/second", b"2")
    assert ops(server)[("namenode", "RENAME")] == 2
    assert ops(server)[("namenode", "MKDIRS")] == 1
    assert server.raw_read(f"{root}/p/second") == b"2"
    assert tmp_files(server, root) == []


def test_existing_key_is_file_exists_and_keeps_the_old_bytes(server, root, store):
    server.raw_write(f"{root}/k", b"old")
    server.reset_log()
    with pytest.raises(FileExistsError):
        store.create("k", b"new")
    # the taken key is learnt from RENAME's false plus one GETFILESTATUS, on this path only
    assert [op for _node, op in sequence(server)][-3:] == ["RENAME", "GETFILESTATUS", "DELETE"]
    assert server.raw_read(f"{root}/k") == b"old"
    assert tmp_files(server, root) == []


def test_a_staged_file_that_vanishes_is_staged_again(server, root, store, monkeypatch):
    real_stage = store._stage
    calls = []

    def stage_then_vanish(staged, data, key):
        real_stage(staged, data, key)
        if not calls:
            server.raw_delete(staged)
        calls.append(staged)

    monkeypatch.setattr(store, "_stage", stage_then_vanish)
    store.create("v", b"data")
    assert len(calls) == 2
    assert server.raw_read(f"{root}/v") == b"data"


# -- unreachable ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_namenode_is_a_quick_connection_error_naming_it():
    port = _closed_port()
    store = open_webhdfs(f"webhdfs://127.0.0.1:{port}/cas?user=cas", retries=2, backoff=0.01, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        store.read("chunks/ab/cd/x")
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message
    assert "chunks/ab/cd/x" in message
    assert "3 attempts" in message and "9870" in message


def test_unreachable_datanode_names_the_datanode(server, root):
    store = _open(server, root, **FAST)
    server.raw_write(f"{root}/obj", b"x")
    server.datanode_down(0)
    try:
        with pytest.raises(ConnectionError, match="datanode") as info:
            store.read("obj")
    finally:
        server.datanode_up(0)
    assert server.datanode_urls[0] in str(info.value)


def test_stalled_namenode_is_a_timeout_error(server, store):
    server.inject("stall", seconds=1.5, op="LISTSTATUS", times=None)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        store.list("slow")
    assert time.monotonic() - started < 4
    assert ops(server)[("namenode", "LISTSTATUS")] == FAST["retries"] + 1


def test_ha_fails_over_to_the_live_namenode(server, root):
    server.store_url(root)
    live = urlsplit(server.namenode_url).netloc
    store = open_webhdfs(f"webhdfs://127.0.0.1:{_closed_port()},{live}{root}?user=cas", **FAST)
    store.create("ha", b"x")
    assert store.client.active == 1  # later requests go straight to the namenode that answered
    assert store.read("ha") == b"x"


def test_ha_fails_over_on_standby_without_backoff(server, root):
    server.store_url(root)
    live = urlsplit(server.namenode_url).netloc
    store = open_webhdfs(f"webhdfs://{live},{live}{root}?user=cas", timeout=2, retries=1, backoff=5)
    server.reset_log()
    server.inject("status", code=403, exception="StandbyException", message="Operation category READ is not supported in state standby")
    started = time.monotonic()
    assert store.missing(["k"]) == {"k"}
    assert time.monotonic() - started < 1  # failed over at once, no 5 s backoff
    assert ops(server)[("namenode", "GETFILESTATUS")] == 2


def test_closed_backend_refuses_work(store):
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.list("")


def test_backend_is_a_webhdfs_backend(store):
    assert isinstance(store, WebHdfsBackend)
    assert isinstance(store.client.session, requests.Session)


# -- credentials never reach messages, tracebacks or logs -------------------------------------------



def _all_text(exc: BaseException) -> str:
    """What a user can see of an error: its message, and the whole traceback (`cas -v`)."""
    import traceback

    return str(exc) + "".join(traceback.format_exception(exc))


def _silent_port():
    """A listening socket whose backlog is full: connecting to it times out."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    time.sleep(0.1)
    return srv, fillers, port


def test_a_connect_timeout_names_the_connect_limit_and_never_the_token(caplog):
    srv, fillers, port = _silent_port()
    try:
        caplog.set_level("DEBUG")
        store = open_webhdfs(f"webhdfs://127.0.0.1:{port}/cas?token={TOKEN}", retries=1, backoff=0.01,
                             connect_timeout=0.3, timeout=60)
        with pytest.raises(TimeoutError) as info:
            store.read("manifests/m/1.msgpack")
    finally:
        for s in fillers + [srv]:
            s.close()
    assert "connect timed out after 0.3 s" in str(info.value)
    assert "60 s" not in str(info.value)  # the idle timeout was not the limit that fired
    assert TOKEN not in _all_text(info.value)
    assert TOKEN not in caplog.text


def test_a_tls_failure_never_shows_the_token(server, root, caplog):
    caplog.set_level("DEBUG")
    https_url = server.store_url(root).replace("webhdfs://", "swebhdfs://").split("?")[0] + f"?token={TOKEN}"
    store = open_backend(https_url, **FAST)  # the test server speaks plain HTTP: the handshake fails
    with pytest.raises(ConnectionError, match="TLS failure") as info:
        store.read("x")
    assert TOKEN not in _all_text(info.value)
    assert TOKEN not in caplog.text and TOKEN not in store.url and TOKEN not in repr(store)


def test_token_requests_and_their_failures_keep_the_token_out_of_logs(server, root, caplog):
    server.tokens[TOKEN] = "cas"
    caplog.set_level("DEBUG")
    store = open_backend(server.store_url(root).split("?")[0] + f"?token={TOKEN}", **FAST)
    store.create("a/b", b"data")
    assert store.read("a/b") == b"data"
    server.inject("cut_response", op="OPEN", node="datanode", times=None, after=1)
    with pytest.raises(ConnectionError) as info:
        store.read("a/b")
    assert "delegation=" in caplog.text  # urllib3 did log the request URLs...
    assert TOKEN not in caplog.text  # ...with the token redacted
    assert TOKEN not in _all_text(info.value)


def test_an_unknown_token_is_permission_denied_naming_what_to_do_not_the_token(server, root):
    store = open_backend(server.store_url(root).split("?")[0] + "?token=NOT-A-KNOWN-TOKEN-42", **FAST)
    server.reset_log()
    with pytest.raises(PermissionError, match=r"refused the delegation token .* \(hdfs fetchdt\)") as info:
        store.list("x")
    assert "NOT-A-KNOWN-TOKEN-42" not in _all_text(info.value)
    assert len(server.request_log) == 1  # a refusal, not retried


def test_bad_urls_never_echo_the_token():
    for url in (f"webhdfs://nn/cas?token={TOKEN}&token=x", f"webhdfs://nn/cas?token={TOKEN}&colour=blue",
                f"webhdfs://nn/cas?token={TOKEN}&user=me"):
        with pytest.raises(ValueError) as info:
            open_webhdfs(url)
        assert TOKEN not in str(info.value)


# -- bounded time and memory whatever a datanode does ---------------------------------------------


def test_a_trickling_datanode_fails_the_read_within_its_deadline(server, root):
    store = _open(server, root, **dict(FAST, timeout=1.0, retries=1), min_rate=50_000)
    server.raw_write(f"{root}/chunks/ab/cd/obj", os.urandom(100_000))
    server.inject("trickle", op="OPEN", node="datanode", times=None, size=1, interval=0.3)  # never idle 1 s
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"kept failing to read 'chunks/ab/cd/obj' after 2 attempts: transfer too slow") as info:
        store.read("chunks/ab/cd/obj")
    elapsed = time.monotonic() - started
    assert elapsed < 2 * (1.0 + 100_000 / 50_000) + 1.5  # two attempts, each within timeout + size / min_rate
    assert "\n" not in str(info.value)


def test_an_endless_body_is_read_only_as_far_as_asked(server, root):
    store = _open(server, root, **FAST)
    server.raw_write(f"{root}/obj", b"x" * 1000)
    server.inject("endless", op="OPEN", node="datanode", times=None)
    assert store.read("obj", 0, 1001) == b"x" * 1000 + b"\0"  # the server's junk, never more than asked
    assert len(store.read("obj", 0, 5)) == 5


@pytest.mark.parametrize("packed", [False, True])
def test_a_get_from_a_trickling_datanode_fails_naming_the_chunk_within_the_deadline(server, root, tmp_path, packed):
    from cas import Store
    from cas.errors import StoreUnavailable

    store = Store.open(server.store_url(root, "cas"), cache_dir=False, n_workers=2,
                       **dict(FAST, timeout=1.0, retries=1), min_rate=100_000)
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(200_000))
    m = store.put(str(src), "m", pack_below=1 << 20 if packed else 0)
    digest = m.files[0].digests[0]
    name = f"packs/../../{m.packed[digest].pack.hex()}" if packed else f"chunks/../../{digest.hex()}"
    server.inject("trickle", op="OPEN", node="datanode", path_prefix=f"{root}/{name.split('/')[0]}/", times=None,
                  size=1, interval=0.3)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"get of 'm' stopped .* to read '{name}' after 2 attempts: "
                                                "transfer too slow") as info:
        store.get("m", str(tmp_path / "out.bin"))
    assert time.monotonic() - started < 2 * (1.0 + 200_000 / 100_000) + 2
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.bin").exists()
