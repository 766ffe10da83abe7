"""The WebHDFS test server against the Hadoop behaviours of webhdfs.md §4 (one test per statement,
``test_sNN_…``), plus emulation, faults and the control API. Raw ``requests`` pins the wire
format; ``hdfs.InsecureClient`` (what production uses) pins that the client is satisfied."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from hdfs import HdfsError, InsecureClient, TokenClient

from cas.testing.webhdfs_server import WebHdfsServer

ROOT = "/t"  # every test works below this directory, owned by alice


@pytest.fixture
def server():
    with WebHdfsServer() as s:
        s.raw_mkdirs(ROOT, owner="alice")
        yield s


@pytest.fixture
def client(server):
    return InsecureClient(server.namenode_url, user="alice")


def nn(server, path, op, method="GET", user="alice", **params):
    """One NameNode request, redirects not followed."""
    query = {"op": op, "user.name": user, **params}
    return requests.request(method, f"{server.namenode_url}/webhdfs/v1{path}", params=query,
                            allow_redirects=False, timeout=10)


def create(server, path, data=b"", user="alice", **params):
    """The two-step CREATE; returns the DataNode's response."""
    first = nn(server, path, "CREATE", "PUT", user, **params)
    assert first.status_code == 307
    return requests.put(first.headers["Location"], data=data, timeout=10)


def read(server, path, user="alice", **params):
    first = nn(server, path, "OPEN", user=user, **params)
    if first.status_code != 307:
        return first
    return requests.get(first.headers["Location"], timeout=10)


def remote(response):
    """(exception, message) of a RemoteException body."""
    return remote_json(response.content)


def remote_json(body):
    error = json.loads(body)["RemoteException"]
    return error["exception"], error["message"]


def status(server, path, user="alice"):
    return nn(server, path, "GETFILESTATUS", user=user)


def start_upload(location, total, first_part):
    """Begin a CREATE body on a raw connection and stop after ``first_part``; finish later."""
    url = requests.utils.urlparse(location)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("PUT", f"{url.path}?{url.query}")
    conn.putheader("Content-Length", str(total))
    conn.endheaders()
    conn.send(first_part)
    return conn


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


# -- §4: the Hadoop behaviours ----------------------------------------------------------------------


def test_s01_create_step1_always_redirects_with_absolute_location(server):
    server.raw_write(f"{ROOT}/exists", b"x")
    server.raw_mkdirs(f"{ROOT}/dir")
    server.raw_mkdirs("/bobs", owner="bob")
    for path in (f"{ROOT}/new", f"{ROOT}/exists", f"{ROOT}/dir", "/bobs/denied", f"{ROOT}/bad:name"):
        r = nn(server, path, "CREATE", "PUT")
        assert r.status_code == 307, path
        assert r.content == b""
        assert r.headers["Location"].startswith(server.datanode_urls[0] + "/webhdfs/v1/")
    r = nn(server, f"{ROOT}/new", "CREATE", "PUT", noredirect="true")
    assert r.status_code == 200
    assert list(r.json()) == ["Location"]
    assert r.json()["Location"].startswith(server.datanode_urls[0] + f"/webhdfs/v1{ROOT}/new?op=CREATE")
    assert server.raw_status(f"{ROOT}/new") is None  # step 1 creates nothing


def test_s02_datanode_put_201_after_close_both_framings_duplicate_params(server):
    r = create(server, f"{ROOT}/cl", b"0123456789")
    assert r.status_code == 201 and r.content == b"" and r.headers["Content-Length"] == "0"
    assert r.headers["Location"] == f"hdfs://127.0.0.1:{server.namenode_port}{ROOT}/cl"
    # closed before the 201: a second creator sees a finished file, not a lease
    assert remote(create(server, f"{ROOT}/cl", b"x"))[0] == "FileAlreadyExistsException"
    r = create(server, f"{ROOT}/chunked", (bytes([i]) * 1000 for i in range(5)))
    assert r.status_code == 201
    assert server.raw_read(f"{ROOT}/chunked") == b"".join(bytes([i]) * 1000 for i in range(5))
    location = nn(server, f"{ROOT}/dup", "CREATE", "PUT").headers["Location"]
    assert requests.put(location + "&user.name=mallory&op=OPEN", data=b"d").status_code == 201
    assert server.raw_status(f"{ROOT}/dup")["owner"] == "alice"


def test_s03_booleans_are_case_insensitive_and_others_are_400(server):
    server.raw_write(f"{ROOT}/f", b"old")
    for value in ("TRUE", "True", "true"):
        assert create(server, f"{ROOT}/f", b"new", overwrite=value).status_code == 201
    for value in ("False", "FALSE", "false"):
        assert remote(create(server, f"{ROOT}/f", b"x", overwrite=value))[0] == "FileAlreadyExistsException"
    r = nn(server, f"{ROOT}/f", "CREATE", "PUT", overwrite="maybe")
    assert r.status_code == 400
    assert remote(r) == ("IllegalArgumentException", remote(r)[1])
    assert remote(r)[1].startswith('Invalid value for webhdfs parameter "overwrite": ')
    assert nn(server, ROOT, "DELETE", "DELETE", recursive="yes").status_code == 400


def test_s04_create_overwrite_false_is_atomic_between_creators(server):
    server.raw_write(f"{ROOT}/taken", b"x")
    r = create(server, f"{ROOT}/taken", b"y")
    assert r.status_code == 403
    assert r.json()["RemoteException"]["javaClassName"] == "org.apache.hadoop.fs.FileAlreadyExistsException"
    assert remote(r)[1].startswith(f"{ROOT}/taken for client 127.0.0.1 already exists")
    # the first creator is mid-upload: AlreadyBeingCreated; once it closed: FileAlreadyExists
    location = nn(server, f"{ROOT}/race", "CREATE", "PUT").headers["Location"]
    first = start_upload(location, 10, b"01234")
    assert wait_until(lambda: server.raw_status(f"{ROOT}/race") is not None)
    exception, message = remote(create(server, f"{ROOT}/race", b"other"))
    assert exception == "AlreadyBeingCreatedException"
    assert message.startswith(f"Failed to CREATE_FILE {ROOT}/race for DFSClient_")
    first.send(b"56789")
    assert first.getresponse().status == 201
    assert remote(create(server, f"{ROOT}/race", b"other"))[0] == "FileAlreadyExistsException"
    assert server.raw_read(f"{ROOT}/race") == b"0123456789"


def test_s04_concurrent_creators_exactly_one_wins(server):
    barrier, results = threading.Barrier(8), []

    def creator(i):
        location = nn(server, f"{ROOT}/contended", "CREATE", "PUT").headers["Location"]
        barrier.wait()
        results.append((i, requests.put(location, data=bytes([i]) * 100_000, timeout=10)))

    threads = [threading.Thread(target=creator, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results if r.status_code == 201]
    assert len(winners) == 1
    for _, r in results:
        if r.status_code != 201:
            assert r.status_code == 403
            assert remote(r)[0] in ("AlreadyBeingCreatedException", "FileAlreadyExistsException")
    assert server.raw_read(f"{ROOT}/contended") == bytes([winners[0]]) * 100_000


def test_s05_overwrite_true_replaces_and_a_directory_is_never_replaced(server):
    server.raw_write(f"{ROOT}/f", b"old contents")
    assert create(server, f"{ROOT}/f", b"new", overwrite="true").status_code == 201
    assert server.raw_read(f"{ROOT}/f") == b"new"
    server.raw_mkdirs(f"{ROOT}/d")
    for overwrite in ("true", "false"):
        r = create(server, f"{ROOT}/d", b"x", overwrite=overwrite)
        assert r.status_code == 403
        exception, message = remote(r)
        assert exception == "FileAlreadyExistsException"
        assert message.startswith(f"{ROOT}/d already exists as a directory")
    # overwrite=true even deletes a file still being written; that writer fails when it closes
    location = nn(server, f"{ROOT}/busy", "CREATE", "PUT").headers["Location"]
    first = start_upload(location, 6, b"abc")
    assert wait_until(lambda: server.raw_status(f"{ROOT}/busy") is not None)
    assert create(server, f"{ROOT}/busy", b"winner", overwrite="true").status_code == 201
    first.send(b"def")
    assert first.getresponse().status == 404
    assert server.raw_read(f"{ROOT}/busy") == b"winner"


def test_s06_create_makes_missing_parents_but_not_below_a_file(server):
    assert create(server, f"{ROOT}/a/b/c/file", b"deep").status_code == 201
    assert server.raw_status(f"{ROOT}/a/b")["type"] == "DIRECTORY"
    assert server.raw_read(f"{ROOT}/a/b/c/file") == b"deep"
    server.raw_write(f"{ROOT}/plain", b"x")
    r = create(server, f"{ROOT}/plain/child", b"y")
    assert r.status_code == 403
    exception, message = remote(r)
    assert exception == "ParentNotDirectoryException"
    assert message.startswith(f"{ROOT}/plain (is not a directory)")


def test_s07_file_is_visible_while_written_and_kept_when_client_leaves(server):
    location = nn(server, f"{ROOT}/growing", "CREATE", "PUT").headers["Location"]
    upload = start_upload(location, 2_000_000, b"a" * 1_000_000)
    assert wait_until(lambda: server.raw_status(f"{ROOT}/growing") is not None)
    st = status(server, f"{ROOT}/growing").json()["FileStatus"]
    assert st["type"] == "FILE" and st["length"] <= 1_000_000
    listed = nn(server, ROOT, "LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    assert [e["pathSuffix"] for e in listed] == ["growing"]
    upload.send(b"b" * 1_000_000)
    assert upload.getresponse().status == 201
    assert status(server, f"{ROOT}/growing").json()["FileStatus"]["length"] == 2_000_000
    # the client disconnects mid-body: what arrived stays, as a closed file
    location = nn(server, f"{ROOT}/cut", "CREATE", "PUT").headers["Location"]
    start_upload(location, 1000, b"x" * 300).close()
    assert wait_until(lambda: server.raw_read(f"{ROOT}/cut") == b"x" * 300)
    assert wait_until(lambda: remote(create(server, f"{ROOT}/cut"))[0] == "FileAlreadyExistsException")


def test_s07_partial_upload_policy_delete_rolls_back(server):
    server.partial_uploads = "delete"
    location = nn(server, f"{ROOT}/cut", "CREATE", "PUT").headers["Location"]
    start_upload(location, 1000, b"x" * 300).close()
    assert wait_until(lambda: server.raw_status(f"{ROOT}/cut") is None)


def test_s08_rename_old_semantics(server, client):
    server.raw_write(f"{ROOT}/src", b"s")
    server.raw_write(f"{ROOT}/taken", b"t")
    server.raw_mkdirs(f"{ROOT}/dir")
    server.raw_write(f"{ROOT}/dir/src", b"clash")

    def rename(src, dst):
        r = nn(server, src, "RENAME", "PUT", destination=dst)
        assert r.status_code == 200
        return r.json()

    assert rename(f"{ROOT}/missing", f"{ROOT}/x") == {"boolean": False}
    assert rename(f"{ROOT}/src", f"{ROOT}/taken") == {"boolean": False}
    assert rename(f"{ROOT}/src", f"{ROOT}/nope/x") == {"boolean": False}
    assert rename(f"{ROOT}/dir", f"{ROOT}/dir/sub") == {"boolean": False}
    assert rename(f"{ROOT}/src", f"{ROOT}/dir") == {"boolean": False}  # dir/src exists
    assert rename(f"{ROOT}/src", f"{ROOT}/src") == {"boolean": True}
    assert server.raw_read(f"{ROOT}/src") == b"s" and server.raw_read(f"{ROOT}/taken") == b"t"
    server.raw_delete(f"{ROOT}/dir/src")
    assert rename(f"{ROOT}/src", f"{ROOT}/dir") == {"boolean": True}  # moved inside
    assert server.raw_read(f"{ROOT}/dir/src") == b"s" and server.raw_status(f"{ROOT}/src") is None
    assert rename(f"{ROOT}/dir", f"{ROOT}/moved") == {"boolean": True}
    assert server.raw_read(f"{ROOT}/moved/src") == b"s"
    with pytest.raises(HdfsError, match="Unable to rename") as info:
        client.rename(f"{ROOT}/moved/src", f"{ROOT}/taken")
    assert info.value.exception is None
    server.namespace.max_directory_items = 3  # ROOT holds taken, moved: one more fits
    server.raw_write(f"{ROOT}/third", b"3")
    r = nn(server, f"{ROOT}/moved/src", "RENAME", "PUT", destination=f"{ROOT}/fourth")
    assert r.status_code == 403 and remote(r)[0] == "MaxDirectoryItemsExceededException"
    assert server.raw_read(f"{ROOT}/moved/src") == b"s"  # all or nothing


def test_s09_delete(server, client):
    r = nn(server, f"{ROOT}/missing", "DELETE", "DELETE")
    assert (r.status_code, r.content) == (200, b'{"boolean":false}')
    server.raw_write(f"{ROOT}/d/f", b"x")
    r = nn(server, f"{ROOT}/d", "DELETE", "DELETE", recursive="false")
    assert r.status_code == 403
    assert r.json() == {"RemoteException": {
        "exception": "PathIsNotEmptyDirectoryException",
        "javaClassName": "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
        "message": f"`{ROOT}/d is non empty': Directory is not empty"}}
    r = nn(server, f"{ROOT}/d", "DELETE", "DELETE", recursive="true")
    assert r.content == b'{"boolean":true}'
    assert server.raw_status(f"{ROOT}/d") is None
    assert nn(server, "/", "DELETE", "DELETE", user="hdfs", recursive="true").json() == {"boolean": False}
    assert client.delete(f"{ROOT}/gone") is False


def test_s10_not_found_messages_and_exact_error_bodies(server):
    p = f"{ROOT}/missing"
    r = status(server, p)
    assert r.status_code == 404
    assert r.content == (b'{"RemoteException":{"exception":"FileNotFoundException",'
                         b'"javaClassName":"java.io.FileNotFoundException",'
                         b'"message":"File does not exist: ' + p.encode() + b'"}}')
    assert r.headers["Content-Type"] == "application/json"
    r = nn(server, p, "LISTSTATUS")
    assert (r.status_code, remote(r)) == (404, ("FileNotFoundException", f"File {p} does not exist."))
    r = nn(server, p, "OPEN")
    assert (r.status_code, remote(r)) == (404, ("FileNotFoundException", f"File {p} not found."))
    r = nn(server, p, "SETPERMISSION", "PUT", permission="600")
    assert (r.status_code, remote(r)) == (404, ("FileNotFoundException", f"Directory/File does not exist {p}"))
    assert nn(server, p, "SETREPLICATION", "PUT", replication="2").json() == {"boolean": False}


def test_s11_liststatus_sorted_children_and_a_file_lists_as_itself(server, client):
    for name in ("b", "a", "C", "a-"):
        server.raw_write(f"{ROOT}/dir/{name}", name.encode())
    entries = nn(server, f"{ROOT}/dir", "LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    assert [e["pathSuffix"] for e in entries] == ["C", "a", "a-", "b"]  # by name bytes
    r = nn(server, f"{ROOT}/dir/a", "LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    assert len(r) == 1 and r[0]["pathSuffix"] == "" and r[0]["type"] == "FILE"
    assert status(server, f"{ROOT}/dir").json()["FileStatus"]["pathSuffix"] == ""
    with pytest.raises(HdfsError, match="is not a directory"):
        client.list(f"{ROOT}/dir/a")
    assert client.list(f"{ROOT}/dir") == ["C", "a", "a-", "b"]


def test_s12_open_offset_and_length(server, client):
    server.raw_write(f"{ROOT}/f", b"hello, world!")
    r = read(server, f"{ROOT}/f", offset=7, length=3)
    assert (r.status_code, r.content, r.headers["Content-Length"]) == (200, b"wor", "3")
    assert read(server, f"{ROOT}/f", offset=7, length=100).content == b"world!"
    assert read(server, f"{ROOT}/f", offset=0).content == b"hello, world!"
    r = nn(server, f"{ROOT}/f", "OPEN", offset=13)
    assert r.status_code == 403
    assert remote(r) == ("IOException", f"Offset=13 out of the range [0, 13); OPEN, path={ROOT}/f")
    server.raw_write(f"{ROOT}/empty", b"")
    r = read(server, f"{ROOT}/empty", offset=0)
    assert (r.status_code, r.content) == (200, b"")
    r = read(server, f"{ROOT}/empty", offset=1)
    assert (r.status_code, remote(r)) == (403, ("EOFException", "Cannot seek after EOF"))
    with client.read(f"{ROOT}/f", offset=7) as reader:
        assert reader.read() == b"world!"


def test_s13_open_of_a_directory_fails_at_the_datanode(server):
    server.raw_mkdirs(f"{ROOT}/d")
    first = nn(server, f"{ROOT}/d", "OPEN")
    assert first.status_code == 307
    r = requests.get(first.headers["Location"])
    assert r.status_code == 404
    assert remote(r)[0] == "FileNotFoundException"
    assert remote(r)[1].startswith(f"Path is not a file: {ROOT}/d")


def test_s14_a_path_through_a_file_is_access_control_exception(server, client):
    server.raw_write(f"{ROOT}/f", b"x")
    for op, method in (("GETFILESTATUS", "GET"), ("LISTSTATUS", "GET"), ("OPEN", "GET"), ("DELETE", "DELETE")):
        r = nn(server, f"{ROOT}/f/x", op, method)
        assert r.status_code == 403, op
        assert remote(r) == ("AccessControlException", f"{ROOT}/f (is not a directory)")
    assert client.status(f"{ROOT}/f/x", strict=False) is None
    with pytest.raises(HdfsError) as info:
        client.status(f"{ROOT}/f/x")
    assert info.value.exception == "AccessControlException"


def test_s15_permissions(server):
    server.raw_mkdirs("/data", owner="alice")
    assert nn(server, "/data/sub", "MKDIRS", "PUT").status_code == 200
    assert create(server, "/data/f", b"x").status_code == 201
    assert create(server, "/data/g", b"x", permission="640").status_code == 201
    st = {p: server.raw_status(p) for p in ("/data/sub", "/data/f", "/data/g")}
    assert [st[p]["permission"] for p in sorted(st)] == ["644", "640", "755"]
    assert {s["owner"] for s in st.values()} == {"alice"}
    assert {s["group"] for s in st.values()} == {"supergroup"}  # the parent's group, BSD rule
    r = create(server, "/data/bobs", b"x", user="bob")
    assert r.status_code == 403
    exception, message = remote(r)
    assert exception == "AccessControlException"
    assert message.startswith('Permission denied: user=bob, access=WRITE, inode="/data":alice:supergroup:drwxr-xr-x')
    r = nn(server, "/data/f", "RENAME", "PUT", user="bob", destination="/data/h")
    assert r.status_code == 403 and remote(r)[0] == "AccessControlException"
    assert nn(server, "/data/g", "SETPERMISSION", "PUT", permission="600").status_code == 200
    r = read(server, "/data/g", user="bob")
    assert r.status_code == 403 and remote(r)[1].startswith("Permission denied: user=bob, access=READ")
    r = nn(server, "/data/g", "SETPERMISSION", "PUT", user="bob", permission="777")
    assert r.status_code == 403 and remote(r)[0] == "AccessControlException"
    assert read(server, "/data/g", user="hdfs").content == b"x"  # the superuser bypasses checks
    assert create(server, "/data/bobs", b"x", user="hdfs").status_code == 201


def test_s16_mkdirs(server):
    for _ in range(2):
        r = nn(server, f"{ROOT}/a/b/c", "MKDIRS", "PUT")
        assert (r.status_code, r.content) == (200, b'{"boolean":true}')
    assert server.raw_status(f"{ROOT}/a/b")["type"] == "DIRECTORY"
    server.raw_write(f"{ROOT}/f", b"x")
    r = nn(server, f"{ROOT}/f", "MKDIRS", "PUT")
    assert r.status_code == 403
    assert remote(r) == ("FileAlreadyExistsException", f"Path is not a directory: {ROOT}/f")


def test_s17_home_directory_and_exact_json_bodies(server):
    r = nn(server, "/", "GETHOMEDIRECTORY", user="carol")
    assert r.content == b'{"Path":"/user/carol"}'
    server.raw_write(f"{ROOT}/f", b"12345")
    body = status(server, f"{ROOT}/f").content.decode()
    assert body.startswith('{"FileStatus":{"accessTime":') and " " not in body
    fs = json.loads(body)["FileStatus"]
    assert list(fs) == sorted(fs) == ["accessTime", "blockSize", "childrenNum", "fileId", "group", "length",
                                      "modificationTime", "owner", "pathSuffix", "permission",
                                      "replication", "storagePolicy", "type"]
    assert (fs["length"], fs["type"], fs["permission"], fs["blockSize"]) == (5, "FILE", "644", 134217728)
    d = status(server, ROOT).json()["FileStatus"]
    assert (d["type"], d["length"], d["blockSize"], d["replication"], d["childrenNum"]) == ("DIRECTORY", 0, 0, 0, 1)


def test_s18_invalid_path_names_are_400(server):
    for path in (f"{ROOT}/sha256:abc", f"{ROOT}/./x", f"{ROOT}/../x"):
        conn = http.client.HTTPConnection("127.0.0.1", server.namenode_port, timeout=5)
        conn.request("GET", f"/webhdfs/v1{path}?op=GETFILESTATUS&user.name=alice")  # no dot-segment removal
        r = conn.getresponse()
        assert r.status == 400, path
        exception, message = remote_json(r.read())
        assert exception == "InvalidPathException"
        assert "Invalid path name" in message and "Invalid file name" in message
    r = create(server, f"{ROOT}/sha256:abc", b"x")  # step 1 redirects; the DataNode rejects
    assert r.status_code == 400 and remote(r)[0] == "InvalidPathException"


def test_s19_limits(server):
    r = create(server, f"{ROOT}/small-blocks", b"x", blocksize="1024")
    assert r.status_code == 403
    assert remote(r)[1].startswith("Specified block size is less than configured minimum value "
                                   "(dfs.namenode.fs-limits.min-block-size): 1024 < 1048576")
    assert create(server, f"{ROOT}/ok-blocks", b"x", blocksize=str(1 << 20)).status_code == 201
    r = create(server, f"{ROOT}/{'n' * 256}", b"x")
    assert r.status_code == 403 and remote(r)[0] == "PathComponentTooLongException"
    assert create(server, f"{ROOT}/{'n' * 255}", b"x").status_code == 201
    server.namespace.max_directory_items = 2
    r = nn(server, f"{ROOT}/third", "MKDIRS", "PUT")
    assert r.status_code == 403
    assert remote(r) == ("MaxDirectoryItemsExceededException",
                         f"The directory item limit of {ROOT} is exceeded: limit=2 items=2")


# -- other operations ----------------------------------------------------------------------------


def test_hdfscli_round_trip(server, client):
    client.write(f"{ROOT}/a/one", b"first")
    client.write(f"{ROOT}/a/two", data=(c for c in (b"se", b"cond")))
    with client.write(f"{ROOT}/a/three") as writer:
        writer.write(b"thi")
        writer.write(b"rd")
    client.write(f"{ROOT}/a/one", b"!", append=True)
    assert client.list(f"{ROOT}/a") == ["one", "three", "two"]
    with client.read(f"{ROOT}/a/one") as reader:
        assert reader.read() == b"first!"
    assert server.raw_read(f"{ROOT}/a/two") == b"second"
    assert client.status(f"{ROOT}/a/three")["length"] == 5
    assert client.status(f"{ROOT}/nothing", strict=False) is None
    summary = client.content(f"{ROOT}/a")
    assert (summary["directoryCount"], summary["fileCount"], summary["length"]) == (1, 3, 17)
    assert (summary["quota"], summary["spaceQuota"], summary["spaceConsumed"]) == (-1, -1, 51)
    client.set_permission(f"{ROOT}/a/one", "600")
    client.set_replication(f"{ROOT}/a/one", 2)
    assert (client.status(f"{ROOT}/a/one")["permission"], client.status(f"{ROOT}/a/one")["replication"]) == ("600", 2)
    with pytest.raises(HdfsError, match="is not a file"):
        client.set_replication(f"{ROOT}/a", 2)
    client.makedirs(f"{ROOT}/b/c")
    client.rename(f"{ROOT}/a/one", f"{ROOT}/b/c/one")
    assert [p for p, _, files in client.walk(ROOT) for _ in files] == [f"{ROOT}/a", f"{ROOT}/a", f"{ROOT}/b/c"]
    assert client.delete(f"{ROOT}/a", recursive=True) is True
    with pytest.raises(HdfsError, match="does not exist"):
        client.list(f"{ROOT}/a")
    assert InsecureClient(server.namenode_url, user="alice").resolve("rel") == "/user/alice/rel"


def test_append_and_its_errors(server):
    server.raw_write(f"{ROOT}/log", b"one")
    first = nn(server, f"{ROOT}/log", "APPEND", "POST")
    assert first.status_code == 307
    r = requests.post(first.headers["Location"], data=b",two")
    assert (r.status_code, r.content) == (200, b"")
    assert server.raw_read(f"{ROOT}/log") == b"one,two"
    r = nn(server, f"{ROOT}/nope", "APPEND", "POST")
    assert (r.status_code, remote(r)) == (404, ("FileNotFoundException", f"File {ROOT}/nope not found."))


def test_file_checksum_is_deterministic_with_hadoops_shape(server, client):
    server.raw_write(f"{ROOT}/a", b"same")
    server.raw_write(f"{ROOT}/b", b"same")
    server.raw_write(f"{ROOT}/c", b"diff")
    first = nn(server, f"{ROOT}/a", "GETFILECHECKSUM")
    assert first.status_code == 307
    checksum = requests.get(first.headers["Location"]).json()["FileChecksum"]
    assert checksum["algorithm"] == "MD5-of-0MD5-of-512CRC32C" and checksum["length"] == 28
    assert len(bytes.fromhex(checksum["bytes"])) == 28
    assert client.checksum(f"{ROOT}/b") == checksum != client.checksum(f"{ROOT}/c")


def test_delegation_tokens_and_doas(server):
    server.tokens["tok-1"] = "alice"
    client = TokenClient(server.namenode_url, "tok-1")
    client.write(f"{ROOT}/by-token", b"x")
    assert server.raw_status(f"{ROOT}/by-token")["owner"] == "alice"
    with client.read(f"{ROOT}/by-token") as reader:
        assert reader.read() == b"x"
    r = requests.get(f"{server.namenode_url}/webhdfs/v1/?op=GETHOMEDIRECTORY&delegation=bogus")
    assert r.status_code == 403 and remote(r)[0] == "InvalidToken"
    assert nn(server, "/", "GETHOMEDIRECTORY", user="hdfs", doas="dave").json() == {"Path": "/user/dave"}
    assert nn(server, "/", "GETHOMEDIRECTORY", user="bob", doas="dave").status_code == 403


def test_unknown_ops_and_urls(server):
    r = nn(server, ROOT, "NOSUCHOP")
    assert r.status_code == 400 and remote(r)[1].startswith('Invalid value for webhdfs parameter "op"')
    r = nn(server, ROOT, "concat", "POST", sources="/a")
    assert r.status_code == 400 and remote(r)[0] == "UnsupportedOperationException"
    assert nn(server, ROOT, "getfilestatus").status_code == 200  # op names are case-insensitive
    assert requests.get(f"{server.namenode_url}/other").status_code == 404


# -- HTTP behaviour ------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.namenode_port, timeout=5)
    for _ in range(3):
        conn.request("GET", f"/webhdfs/v1{ROOT}?op=GETFILESTATUS&user.name=alice")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["FileStatus"]["type"] == "DIRECTORY"
        assert not r.will_close
    assert sum(1 for _ in server.request_log) == 3


def test_sixteen_concurrent_connections(server):
    blobs = {i: os.urandom(300_000) for i in range(16)}
    barrier, failures = threading.Barrier(16), []
    idle = [socket.create_connection(("127.0.0.1", server.datanodes[0].port)) for _ in range(16)]

    def worker(i):
        try:
            client = InsecureClient(server.namenode_url, user="alice")
            barrier.wait()
            client.write(f"{ROOT}/c{i}", blobs[i])
            with client.read(f"{ROOT}/c{i}") as reader:
                assert reader.read() == blobs[i]
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in idle:
        s.close()
    assert failures == []
    assert all(server.raw_read(f"{ROOT}/c{i}") == blobs[i] for i in range(16))


def test_bulk_transfer_has_no_per_byte_overhead(server):
    data = os.urandom(48 << 20)
    start = time.monotonic()
    assert create(server, f"{ROOT}/big", data).status_code == 201
    sock = socket.create_connection(("127.0.0.1", server.datanodes[0].port))
    location = requests.utils.urlparse(nn(server, f"{ROOT}/big", "OPEN").headers["Location"])
    sock.sendall(f"GET {location.path}?{location.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    received = bytearray()
    while chunk := sock.recv(1 << 20):
        received += chunk
    elapsed = time.monotonic() - start
    assert received.endswith(data)
    assert elapsed < 6.0, f"96 MiB moved in {elapsed:.2f}s"  # a per-byte Python loop would be far slower


def test_open_answers_with_connection_close_like_the_datanode(server):
    server.raw_write(f"{ROOT}/f", b"abc")
    r = read(server, f"{ROOT}/f")
    assert r.headers["Connection"] == "close" and r.headers["Content-Type"] == "application/octet-stream"


# -- network emulation ---------------------------------------------------------------------------


def test_bandwidth_caps_uploads_and_downloads(server):
    server.bandwidth = 4_000_000
    data = os.urandom(1_000_000)
    start = time.monotonic()
    assert create(server, f"{ROOT}/slow", data).status_code == 201
    upload = time.monotonic() - start
    start = time.monotonic()
    assert read(server, f"{ROOT}/slow").content == data
    download = time.monotonic() - start
    assert 0.25 <= upload < 2.0 and 0.25 <= download < 2.0, (upload, download)
    server.bandwidth = None
    start = time.monotonic()
    assert read(server, f"{ROOT}/slow").content == data
    assert time.monotonic() - start < 0.2


def test_latency_is_added_once_per_request(server, client):
    server.latency = 0.05
    start = time.monotonic()
    for _ in range(4):
        status(server, ROOT)
    assert 0.2 <= time.monotonic() - start < 1.0
    server.reset_log()
    start = time.monotonic()
    client.write(f"{ROOT}/f", b"x")  # two requests: NameNode and DataNode
    assert len(server.request_log) == 2 and time.monotonic() - start >= 0.1


# -- faults --------------------------------------------------------------------------------------


def test_fault_refuse_resets_the_connection(server):
    fault = server.inject("refuse", op="GETFILESTATUS")
    with pytest.raises(requests.ConnectionError):
        status(server, ROOT)
    assert status(server, ROOT).status_code == 200
    assert nn(server, ROOT, "LISTSTATUS").status_code == 200
    assert fault.hits == 1


def test_fault_status_answers_with_a_remote_exception(server, client):
    server.inject("status", op="LISTSTATUS", code=503)
    r = nn(server, ROOT, "LISTSTATUS")
    assert r.status_code == 503
    assert r.json()["RemoteException"]["javaClassName"] == "org.apache.hadoop.ipc.RetriableException"
    fault = server.inject("status", node="datanode", code=500, exception="NullPointerException", message=None)
    with pytest.raises(HdfsError) as info:
        client.write(f"{ROOT}/f", b"x")
    assert info.value.exception == "NullPointerException" and fault.hits == 1
    assert server.raw_status(f"{ROOT}/f") is None  # the op did not run


def test_fault_cut_response_truncates_the_body_after_the_op_ran(server, client):
    server.raw_write(f"{ROOT}/f", b"0123456789" * 1000)
    fault = server.inject("cut_response", op="OPEN", node="datanode", after=100)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        read(server, f"{ROOT}/f")
    assert fault.hits == 1
    server.inject("cut_response", op="RENAME")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        nn(server, f"{ROOT}/f", "RENAME", "PUT", destination=f"{ROOT}/g")
    assert server.raw_read(f"{ROOT}/g") is not None  # the rename happened; only the answer was lost
    server.inject("cut_response", op="CREATE", node="datanode")
    with pytest.raises(requests.ConnectionError):
        client.write(f"{ROOT}/h", b"data")
    assert server.raw_read(f"{ROOT}/h") == b"data"


def test_fault_cut_upload_keeps_a_closed_partial_file(server, client):
    fault = server.inject("cut_upload", path_prefix=f"{ROOT}/up", after=1000)
    with pytest.raises(requests.ConnectionError):
        client.write(f"{ROOT}/up", os.urandom(1_000_000))
    assert fault.hits == 1
    assert len(server.raw_read(f"{ROOT}/up")) == 1000
    assert remote(create(server, f"{ROOT}/up", b"x"))[0] == "FileAlreadyExistsException"
    server.inject("cut_upload")
    with pytest.raises(requests.ConnectionError):
        client.write(f"{ROOT}/chunked", (bytes(32 * 1024) for _ in range(8)))
    assert len(server.raw_read(f"{ROOT}/chunked")) == 64 * 1024


def test_fault_stall_delays_the_answer(server):
    server.inject("stall", op="GETFILESTATUS", seconds=0.3)
    start = time.monotonic()
    assert status(server, ROOT).status_code == 200
    assert time.monotonic() - start >= 0.3
    server.inject("stall", op="GETFILESTATUS", seconds=2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{server.namenode_url}/webhdfs/v1{ROOT}?op=GETFILESTATUS&user.name=alice", timeout=0.2)


def test_faults_fire_exactly_times_across_threads(server):
    fault = server.inject("status", op="GETFILESTATUS", times=5)
    codes = []

    def worker():
        for _ in range(4):
            codes.append(status(server, ROOT).status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes).count(500) == 5 and codes.count(200) == 27 and fault.hits == 5
    forever = server.inject("refuse", op="LISTSTATUS", times=None)
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            nn(server, ROOT, "LISTSTATUS")
    server.clear_faults()
    assert nn(server, ROOT, "LISTSTATUS").status_code == 200 and forever.hits == 3
    with pytest.raises(ValueError):
        server.inject("explode")


def test_fault_skip_lets_the_first_matching_requests_through(server):
    fault = server.inject("status", op="GETFILESTATUS", code=500, skip=2, times=1)
    codes = [status(server, ROOT).status_code for _ in range(4)]
    assert codes == [200, 200, 500, 200] and fault.hits == 1


def test_datanode_down_refuses_connections_and_comes_back_on_the_same_port(server, client):
    port = server.datanodes[0].port
    server.datanode_down(0)
    with pytest.raises(requests.ConnectionError):
        client.write(f"{ROOT}/f", b"x")
    assert status(server, ROOT).status_code == 200  # the NameNode is unaffected
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    server.datanode_up(0)
    assert server.datanodes[0].port == port
    client.write(f"{ROOT}/f", b"back")
    assert server.raw_read(f"{ROOT}/f") == b"back"


def test_several_datanodes_share_the_work():
    with WebHdfsServer(datanodes=3, permissions=False) as s:
        c = InsecureClient(s.namenode_url, user="x")
        locations = [nn(s, f"/f{i}", "CREATE", "PUT").headers["Location"] for i in range(3)]
        assert sorted(loc.split("/webhdfs")[0] for loc in locations) == sorted(s.datanode_urls)
        s.datanode_down(1)
        results = []
        for i in range(3):
            try:
                c.write(f"/g{i}", b"x")
                results.append(True)
            except requests.ConnectionError:
                results.append(False)
        assert results.count(False) == 1  # round robin still sends one of three to the dead node


# -- control API ---------------------------------------------------------------------------------


def test_raw_access_and_request_log(server):
    server.raw_write(f"{ROOT}/x/y", b"raw")
    assert read(server, f"{ROOT}/x/y").content == b"raw"
    assert server.raw_status(f"{ROOT}/x/y")["owner"] == "alice"  # inherited from the store root
    assert server.raw_read(f"{ROOT}/x") is None and server.raw_read(f"{ROOT}/none") is None
    assert server.raw_delete(f"{ROOT}/x") is True and server.raw_delete(f"{ROOT}/x") is False
    assert server.request_log == [("GET", "namenode", "OPEN", f"{ROOT}/x/y"),
                                  ("GET", "datanode", "OPEN", f"{ROOT}/x/y")]
    server.reset_log()
    assert server.request_log == []
    url = server.store_url("/store", user="cas")
    assert url == f"webhdfs://127.0.0.1:{server.namenode_port}/store?user=cas"
    assert server.raw_status("/store")["owner"] == "cas"


def test_data_lives_in_the_given_directory(tmp_path):
    with WebHdfsServer(data_dir=str(tmp_path)) as s:
        s.raw_write("/f", b"on disk")
        assert [p.read_bytes() for p in tmp_path.iterdir()] == [b"on disk"]
    assert tmp_path.exists()  # a caller's directory is not removed


def test_command_line_serves_until_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "cas.testing.webhdfs_server", "--datanodes", "2",
                             "--root", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        namenode = proc.stdout.readline().split()[-1]
        store = proc.stdout.readline().split()[-1]
        assert store.startswith("webhdfs://127.0.0.1:") and store.endswith("/cas?user=cas")
        r = requests.get(f"{namenode}/webhdfs/v1/cas?op=GETFILESTATUS&user.name=cas", timeout=5)
        assert r.json()["FileStatus"]["owner"] == "cas"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
