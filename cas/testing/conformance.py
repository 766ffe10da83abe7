"""The conformance suite every backend passes.

Use it from pytest by subclassing and providing two fixtures::

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self):
            ...  # a fresh, empty backend
        @pytest.fixture
        def raw_read(self, backend):
            ...  # a function key -> bytes | None that reads *around* the backend under test

``raw_read`` is what makes the suite honest: results are checked through a path that does not
go through the code being tested (the file system, the server's own storage, a second client).

Optional fixtures (the defaults skip the tests that need them):

- ``raw_write``: a function (key, bytes) -> None that writes *around* the backend, as another
  client, an older cas, or a writer killed mid-create (leftovers under ``tmp/``) would.
- ``credential``: the secret the ``backend`` fixture was opened with (a delegation token, a
  secret key or session token put in the environment); it must never appear in the backend's
  ``url``, its ``repr``, or any error's message or traceback.
- ``refused_backend``: a backend of the same store opened with ``WRONG_SECRET``, a credential
  the store refuses: every operation fails (never as "missing") without showing it.

After ``close`` every operation fails at once with ValueError naming the store; it never waits
on a network and never reconnects (``test_every_operation_after_close_...``).
"""

from __future__ import annotations

import mmap
import os
import threading
import time
import traceback

import pytest

from cas.backends.base import read_into

WRONG_SECRET = "cas-conformance-wrong-secret-7d41c2"


def _raised(call, seconds: float = 30.0) -> BaseException | None:
    """What ``call()`` raised (None if it returned), failing the test if it is still running after
    ``seconds``: a closed or refused backend must answer, not hang."""
    outcome: list[BaseException | None] = []

    def run():
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome[0]


def race_create(backend, key: str, payloads: list[bytes]) -> list[object]:
    """One thread per payload creates ``key`` at the same moment; each result is "won", "lost"
    (FileExistsError) or the exception it raised."""
    results: list[object] = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads))

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            backend.create(key, payloads[i])
            results[i] = "won"
        except FileExistsError:
            results[i] = "lost"
        except BaseException as exc:  # noqa: BLE001 - recorded and asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _all_text(exc: BaseException) -> str:
    """What a user can see of an error: its message and the whole traceback (``cas -v``)."""
    return str(exc) + "".join(traceback.format_exception(exc))


class BackendConformance:
    @pytest.fixture
    def raw_write(self):
        return None

    @pytest.fixture
    def credential(self):
        return None

    @pytest.fixture
    def refused_backend(self):
        return None

    # -- read / create ----------------------------------------------------------------------

    def test_create_then_read_returns_the_bytes(self, backend, raw_read):
        data = os.urandom(100_000)
        backend.create("a/b/c", data)
        assert backend.read("a/b/c") == data
        assert raw_read("a/b/c") == data

    def test_empty_object_round_trips(self, backend, raw_read):
        backend.create("empty", b"")
        assert backend.read("empty") == b""
        assert raw_read("empty") == b""

    def test_large_object_round_trips(self, backend):
        data = os.urandom(9 << 20)
        backend.create("big/object", data)
        assert backend.read("big/object") == data

    def test_create_from_a_reused_buffer_keeps_the_bytes_it_was_given(self, backend, raw_read):
        # The put pipeline encodes every chunk into one page-aligned buffer per thread and hands
        # create a view of it; the next chunk overwrites that buffer.
        buf = mmap.mmap(-1, 2 << 20)
        first = os.urandom((1 << 20) + 123)  # whole pages plus a short tail
        buf[: len(first)] = first
        backend.create("reused/1", memoryview(buf)[: len(first)])
        buf[: len(first)] = bytes(len(first))
        backend.create("reused/2", memoryview(buf)[:5000])
        assert backend.read("reused/1") == first
        assert raw_read("reused/1") == first
        assert backend.read("reused/2") == bytes(5000)

    def test_read_into_a_buffer(self, backend):
        data = os.urandom(300_001)
        backend.create("into/x", data)
        buf = bytearray(400_000)
        assert bytes(read_into(backend, "into/x", buf)) == data
        with pytest.raises(BufferError):
            read_into(backend, "into/x", bytearray(300_000))
        with pytest.raises(FileNotFoundError):
            read_into(backend, "into/missing", buf)

    def test_read_into_fills_a_reused_buffer_and_leaves_it_alone_when_the_object_does_not_fit(self, backend):
        backend.create("into/a", b"a" * 5000)
        backend.create("into/b", b"b" * 3000)
        backend.create("into/empty", b"")
        buf = mmap.mmap(-1, 8192)  # page-aligned, as the get pipeline's buffers are
        assert backend.read_into("into/a", buf) == 5000
        assert backend.read_into("into/b", buf) == 3000
        assert buf[:5000] == b"b" * 3000 + b"a" * 2000
        assert backend.read_into("into/empty", buf) == 0
        small = bytearray(b"z" * 2999)
        with pytest.raises(BufferError):
            backend.read_into("into/b", small)
        assert small == b"z" * 2999

    def test_ranged_reads(self, backend):
        data = bytes(range(256)) * 40
        backend.create("r", data)
        assert backend.read("r", offset=10, length=20) == data[10:30]
        assert backend.read("r", offset=5000) == data[5000:]
        assert backend.read("r", offset=len(data) - 3, length=100) == data[-3:]
        assert backend.read("r", offset=len(data)) == b""
        assert backend.read("r", offset=len(data) + 100, length=5) == b""

    def test_read_missing_raises_file_not_found(self, backend):
        with pytest.raises(FileNotFoundError):
            backend.read("nope/never")

    def test_create_existing_raises_and_keeps_the_original(self, backend, raw_read):
        backend.create("k", b"first")
        with pytest.raises(FileExistsError):
            backend.create("k", b"second, longer")
        assert backend.read("k") == b"first"
        assert raw_read("k") == b"first"

    def test_concurrent_creators_of_one_key_exactly_one_wins(self, backend, raw_read):
        n = 6
        results = race_create(backend, "race/key", [bytes([i]) * 200_000 for i in range(n)])
        assert results.count("won") == 1, results
        assert results.count("lost") == n - 1, results
        winner = results.index("won")
        assert raw_read("race/key") == bytes([winner]) * 200_000

    def test_create_makes_missing_parents(self, backend):
        backend.create("deep/ly/nested/prefix/obj", b"x")
        assert backend.list("deep/ly") == ["nested"]

    # -- delete -----------------------------------------------------------------------------

    def test_delete_reports_whether_it_removed(self, backend, raw_read):
        backend.create("gone", b"x")
        assert backend.delete("gone") is True
        assert raw_read("gone") is None
        assert backend.delete("gone") is False
        with pytest.raises(FileNotFoundError):
            backend.read("gone")

    def test_create_after_delete_succeeds(self, backend):
        backend.create("again", b"1")
        backend.delete("again")
        backend.create("again", b"2")
        assert backend.read("again") == b"2"

    # -- move (gc sets chunks aside and puts them back) ------------------------------------------

    def test_move_renames_an_object_into_a_new_directory(self, backend, raw_read):
        data = os.urandom(70_000)
        backend.create("chunks/ab/cd/abcd", data)
        backend.move("chunks/ab/cd/abcd", "trash/g1/chunks+ab+cd+abcd")
        assert backend.read("trash/g1/chunks+ab+cd+abcd") == data
        assert raw_read("trash/g1/chunks+ab+cd+abcd") == data
        assert backend.missing(["chunks/ab/cd/abcd"]) == {"chunks/ab/cd/abcd"}
        backend.move("trash/g1/chunks+ab+cd+abcd", "chunks/ab/cd/abcd")  # and back
        assert backend.read("chunks/ab/cd/abcd") == data
        assert [o.key for o in backend.walk("trash")] == []

    def test_move_onto_an_existing_object_keeps_it_and_removes_the_source(self, backend):
        backend.create("moved/src", b"same content")
        backend.create("moved/dst", b"same content")
        backend.move("moved/src", "moved/dst")
        assert backend.read("moved/dst") == b"same content"
        assert backend.missing(["moved/src"]) == {"moved/src"}

    def test_move_of_a_missing_object_is_file_not_found(self, backend):
        with pytest.raises(FileNotFoundError):
            backend.move("moved/nothing", "moved/anywhere")
        assert backend.missing(["moved/anywhere"]) == {"moved/anywhere"}

    # -- list / walk / missing --------------------------------------------------------------

    def test_list_names_children_sorted(self, backend):
        for key in ("p/b", "p/a", "p/sub/x", "p/sub/y", "other/z"):
            backend.create(key, b"v")
        assert backend.list("p") == ["a", "b", "sub"]
        assert backend.list("p/sub") == ["x", "y"]

    def test_list_missing_prefix_is_empty(self, backend):
        assert backend.list("no/such/prefix") == []

    def test_walk_yields_every_object_with_its_size(self, backend):
        objects = {"w/a": b"1", "w/b/c": b"22", "w/b/d/e": b"333", "elsewhere": b"4444"}
        for key, data in objects.items():
            backend.create(key, data)
        found = list(backend.walk("w"))
        assert sorted((o.key, o.size) for o in found) == [("w/a", 1), ("w/b/c", 2), ("w/b/d/e", 3)]
        assert all(abs(o.mtime - time.time()) < 600 for o in found)  # gc's grace period relies on it
        assert list(backend.walk("nothing/here")) == []

    def test_missing_returns_exactly_the_absent_keys(self, backend):
        backend.create("m/1", b"x")
        backend.create("m/2", b"x")
        asked = ["m/1", "m/2", "m/3", "n/4"]
        assert backend.missing(asked) == {"m/3", "n/4"}
        assert backend.missing([]) == set()

    def test_missing_handles_many_keys(self, backend):
        present = [f"chunks/{i:02x}/{i:02x}/{i:032x}" for i in range(0, 300, 3)]
        for key in present:
            backend.create(key, b"c")
        asked = [f"chunks/{i:02x}/{i:02x}/{i:032x}" for i in range(300)]
        assert backend.missing(asked) == set(asked) - set(present)

    def test_flush_keeps_every_object_readable(self, backend):
        backend.create("f/1", b"one")
        backend.create("f/2", os.urandom(300_000))
        backend.flush()
        backend.flush()  # idempotent
        assert backend.read("f/1") == b"one" and len(backend.read("f/2")) == 300_000

    # -- staging ----------------------------------------------------------------------------

    def test_create_leaves_nothing_outside_tmp(self, backend):
        backend.create("x/y", b"data")
        backend.create("x/z", b"data")
        with pytest.raises(FileExistsError):
            backend.create("x/y", b"other")
        keys = sorted(o.key for o in backend.walk("x"))
        assert keys == ["x/y", "x/z"]
        assert [o.key for o in backend.walk("tmp")] == []

    # -- keys from a damaged store ------------------------------------------------------------

    @pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", "a//b", "a/./b", "a/", "a\\b"])
    def test_keys_that_could_leave_the_root_are_refused(self, backend, key):
        # Keys are built from names read from the store (tag targets, listings); a hostile or
        # damaged store must never make a backend touch anything outside its root.
        for call in (lambda: backend.read(key), lambda: backend.create(key, b"x"), lambda: backend.delete(key),
                     lambda: backend.list(key), lambda: list(backend.walk(key))):
            with pytest.raises(ValueError, match="store key"):
                call()

    def test_a_bounded_read_of_a_large_object_returns_at_most_what_was_asked(self, backend):
        backend.create("big/bounded", os.urandom(3 << 20))
        assert len(backend.read("big/bounded", 0, 4097)) == 4097

    # -- objects written around the backend -------------------------------------------------

    def test_an_object_written_around_the_backend_is_read_listed_walked_and_found(self, backend, raw_write):
        if raw_write is None:
            pytest.skip("no raw write path for this backend")
        data = os.urandom(70_000)
        raw_write("ext/a/obj", data)
        assert backend.read("ext/a/obj") == data
        assert backend.read("ext/a/obj", 10, 5) == data[10:15]
        buf = bytearray(100_000)
        assert bytes(read_into(backend, "ext/a/obj", buf)) == data
        assert backend.list("ext") == ["a"] and backend.list("ext/a") == ["obj"]
        assert [(o.key, o.size) for o in backend.walk("ext")] == [("ext/a/obj", len(data))]
        assert backend.missing(["ext/a/obj", "ext/a/other"]) == {"ext/a/other"}

    def test_create_refuses_a_key_written_around_it_and_keeps_those_bytes(self, backend, raw_read, raw_write):
        if raw_write is None:
            pytest.skip("no raw write path for this backend")
        raw_write("theirs/k", b"written by someone else")
        with pytest.raises(FileExistsError):
            backend.create("theirs/k", b"ours")
        assert raw_read("theirs/k") == b"written by someone else"
        assert backend.delete("theirs/k") is True
        assert raw_read("theirs/k") is None

    def test_a_killed_writers_leftover_under_tmp_is_walked_and_deleted(self, backend, raw_write):
        # What gc sweeps: a staging name (creation time first) left by a writer that died mid-create.
        if raw_write is None:
            pytest.skip("no raw write path for this backend")
        leftover = f"tmp/{int((time.time() - 7200) * 1000):013d}-{'0' * 32}"
        raw_write(leftover, b"partial")
        backend.create("tmp-neighbour/x", b"x")
        assert [(o.key, o.size) for o in backend.walk("tmp")] == [(leftover, 7)]
        assert backend.delete(leftover) is True
        assert list(backend.walk("tmp")) == []

    # -- use after close -------------------------------------------------------------------------

    def test_every_operation_after_close_fails_at_once_and_touches_nothing(self, backend, raw_read):
        backend.create("kept", b"x")
        backend.close()
        backend.close()  # closing twice is harmless
        buf = bytearray(10)
        calls = {
            "read": lambda: backend.read("kept"),
            "read_into": lambda: backend.read_into("kept", buf),
            "create": lambda: backend.create("after/close", b"y"),
            "delete": lambda: backend.delete("kept"),
            "list": lambda: backend.list(""),
            "walk": lambda: list(backend.walk("")),
            "missing": lambda: backend.missing(["kept", "other"]),
            "flush": backend.flush,
        }
        for name, call in calls.items():
            exc = _raised(call, seconds=10)
            assert isinstance(exc, ValueError) and "closed" in str(exc), (name, exc)
            assert backend.url in str(exc), (name, exc)
        assert raw_read("kept") == b"x"  # not deleted
        assert raw_read("after/close") is None  # not created: no silent reconnect

    # -- credentials ----------------------------------------------------------------------------

    def test_no_credential_in_the_url_repr_or_any_message(self, backend, credential):
        if not credential:
            pytest.skip("this backend is opened without a credential")
        backend.create("cred/k", b"x")
        calls = [
            lambda: backend.read("cred/missing"),
            lambda: backend.read_into("cred/missing", bytearray(1)),
            lambda: backend.read_into("cred/k", bytearray(0)),
            lambda: backend.create("cred/k", b"y"),
            lambda: backend.read("../outside"),
            lambda: backend.list("/abs"),
        ]
        errors = [_raised(call) for call in calls]
        backend.close()
        errors.append(_raised(lambda: backend.read("cred/k")))
        assert all(e is not None for e in errors), errors
        for text in [backend.url, repr(backend), *map(_all_text, errors)]:
            assert credential not in text

    def test_a_refused_credential_fails_every_operation_without_showing_it(self, refused_backend):
        if refused_backend is None:
            pytest.skip("no way to make this store refuse a credential")
        calls = {
            "read": lambda: refused_backend.read("refused/k"),
            "create": lambda: refused_backend.create("refused/k", b"x"),
            "list": lambda: refused_backend.list("refused"),
            "missing": lambda: refused_backend.missing(["refused/k"]),
        }
        for name, call in calls.items():
            exc = _raised(call)
            assert exc is not None, name
            # a refusal is never taken for "missing" or "exists": that would publish or lose data
            assert not isinstance(exc, (FileNotFoundError, FileExistsError)), (name, exc)
            assert WRONG_SECRET not in _all_text(exc), (name, exc)
        assert WRONG_SECRET not in refused_backend.url and WRONG_SECRET not in repr(refused_backend)
