"""The byte-plane codec (chunk codec 2): which chunks get it, round trips, and hostile objects."""

import os
import random
import struct
import tracemalloc

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas import byteplanes, codec
from cas.errors import CorruptChunk

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME = "chunk 0123abcd"


def float32_weights(n_values: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return struct.pack(f"<{n_values}f", *(rng.gauss(0.0, 0.02) for _ in range(n_values)))


def bfloat16_weights(n_values: int, seed: int = 0) -> bytes:
    f32 = float32_weights(n_values, seed)
    return b"".join(f32[i + 2:i + 4] for i in range(0, len(f32), 4))  # the top half of each float32


WEIGHTS = float32_weights(16_384)  # 64 KiB
TEXT = b"".join(b'{"layer_%d": {"units": %d, "activation": "relu"}}\n' % (i, i * 7 % 512) for i in range(2000))


def encode_into_bytes(raw, **options) -> bytes:
    out = bytearray(codec.encoded_capacity(len(raw)) + 5)
    return bytes(out[:codec.encode_into(raw, out, **options)])


def decode_into_offset_view(obj, *, expected_length: int, name: str = NAME):
    """decode_into a view 37 bytes into a larger buffer (the planes are merged through its exporter)."""
    backing = bytearray(expected_length + 100)
    view = memoryview(backing)[37:37 + expected_length]
    out = codec.decode_into(obj, view, expected_length=expected_length, name=name)
    assert not any(backing[:37]) and not any(backing[37 + expected_length:])  # nothing written outside
    return out


ENCODERS = pytest.mark.parametrize("encode", [codec.encode, encode_into_bytes], ids=["oneshot", "into"])
DECODERS = pytest.mark.parametrize("decode", [
    codec.decode,
    lambda obj, **kw: codec.decode_into(obj, bytearray(kw["expected_length"]), **kw),
    decode_into_offset_view,
], ids=["oneshot", "into", "into-view"])


# -- which codec a chunk gets ----------------------------------------------------------------------

@ENCODERS
@DECODERS
@pytest.mark.parametrize("data, width", [(WEIGHTS, 4), (bfloat16_weights(32_768), 2),
                                         (float32_weights(16_385)[:-1], 4)], ids=["float32", "bfloat16", "odd-length"])
def test_float_weights_are_stored_as_byte_planes_smaller_than_zstd_and_round_trip(encode, decode, data, width):
    obj = encode(data)
    assert codec.read_header(obj) == (codec.PLANES, len(data))
    assert obj[codec.HEADER_SIZE] == width
    assert len(obj) < 0.95 * len(encode(data, policy="zstd"))
    assert bytes(decode(obj, expected_length=len(data))) == data


@ENCODERS
@pytest.mark.parametrize("data", [TEXT, os.urandom(100_000), bytes(70_000), WEIGHTS[:8000]],
                         ids=["text", "random", "zeros", "too-small-for-planes"])
def test_anything_else_is_stored_exactly_as_the_zstd_policy_stores_it(encode, data):
    assert encode(data) == encode(data, policy="zstd")
    assert codec.read_header(encode(data))[0] != codec.PLANES


@ENCODERS
def test_policy_raw_stores_raw_and_policy_zstd_never_planes(encode):
    assert codec.read_header(encode(WEIGHTS, policy="raw")) == (codec.RAW, len(WEIGHTS))
    assert codec.read_header(encode(WEIGHTS, policy="zstd"))[0] == codec.ZSTD
    with pytest.raises(ValueError, match="codec must be one of auto, zstd, raw"):
        encode(WEIGHTS, policy="lz4")


def test_encoding_a_view_at_an_offset_gives_the_same_object():
    expected = codec.encode(WEIGHTS)
    writable = memoryview(bytearray(b"x" * 11 + WEIGHTS + b"y" * 5))[11:11 + len(WEIGHTS)]
    readonly = memoryview(b"x" * 11 + WEIGHTS)[11:]
    assert encode_into_bytes(writable) == encode_into_bytes(readonly) == encode_into_bytes(WEIGHTS) == expected


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
@pytest.mark.parametrize("data, width", [(WEIGHTS, 4), (bfloat16_weights(32_768), 2)], ids=["float32", "bfloat16"])
def test_plane_k_holds_bytes_k_k_plus_width_and_so_on_whatever_the_length_and_start(data, width, cut):
    """The format, pinned: objects from any cas (and any gather method) are byte-identical."""
    raw = memoryview(b"z" * cut + data[:len(data) - cut])[cut:]  # a start off the page, a length cut short
    obj = memoryview(encode_into_bytes(raw))
    assert obj[codec.HEADER_SIZE] == width
    _, planes = byteplanes.read_table(obj[codec.HEADER_SIZE:], len(raw), NAME)
    for k, (mode, start, stored) in enumerate(planes):
        plane = obj[codec.HEADER_SIZE + start:codec.HEADER_SIZE + start + stored]
        if mode == byteplanes.PLANE_ZSTD:
            plane = zstandard.ZstdDecompressor().decompress(plane)
        assert bytes(plane) == bytes(raw)[k::width]


def test_a_plane_that_does_not_save_enough_is_stored_raw():
    obj = codec.encode(WEIGHTS)
    width, planes = byteplanes.read_table(memoryview(obj)[codec.HEADER_SIZE:], len(WEIGHTS), NAME)
    assert [mode for mode, _, _ in planes] == [byteplanes.PLANE_RAW] * 3 + [byteplanes.PLANE_ZSTD]  # mantissas raw


# -- hostile objects ---------------------------------------------------------------------------------

def planes_object(raw_length: int, width: int, entries, body: bytes) -> bytes:
    table = byteplanes.PREFIX.pack(width) + b"".join(byteplanes.ENTRY.pack(mode, n) for mode, n in entries)
    return codec.HEADER.pack(codec.MAGIC, 1, codec.PLANES, 0, raw_length) + table + body


def _frame(n: int) -> bytes:
    return zstandard.ZstdCompressor().compress(b"\x3c" * n)


@DECODERS
@pytest.mark.parametrize("obj, message", [
    (planes_object(8, 3, [(0, 3), (0, 3), (0, 2)], b"x" * 8), "width 3"),
    (planes_object(8, 2, [(0, 4), (0, 4)], b"x" * 9), "planes take 8 bytes but 9 follow the plane table"),
    (planes_object(8, 2, [(0, 4), (0, 4)], b"x" * 7), "plane 1 claims 4 bytes, only 3 remain"),
    (planes_object(8, 2, [(0, 5), (0, 3)], b"x" * 8), "raw plane 0 holds 5 bytes, the chunk's plane has 4"),
    (planes_object(8, 2, [(0, 4), (1, 1 << 31)], b"x" * 4), "plane 1 claims 2147483648 bytes"),
    (planes_object(8, 2, [(0, 4), (7, 4)], b"x" * 8), "plane 1 uses unknown mode 7"),
    (planes_object(8, 2, [(0, 4), (1, len(_frame(4000)))], b"x" * 4 + _frame(4000)),
     "plane 1 zstd frame claims 4000 bytes, the plane has 4"),
    (planes_object(8, 2, [(0, 4), (1, 4)], b"x" * 8), "plane 1 is not a valid zstd frame"),
    (planes_object(8, 2, [(0, 4)], b""), "too short for its 2-plane table"),
    (codec.HEADER.pack(codec.MAGIC, 1, codec.PLANES, 0, 8) + b"\x02\x00\x00\x01", "width 2"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_hostile_plane_tables_raise_corrupt_chunk_naming_the_chunk(decode, obj, message):
    with pytest.raises(CorruptChunk, match=NAME + ".*" + message):
        decode(obj, expected_length=8, name=NAME)


@DECODERS
def test_a_zstd_plane_that_decodes_to_more_than_it_declares_is_refused(decode):
    honest = _frame(40)  # a frame that holds 40 bytes; patched below to declare 4
    obj = planes_object(8, 2, [(0, 4), (1, len(honest))], b"x" * 4 + honest)
    mutated = bytearray(obj)
    frame_at = len(obj) - len(honest)
    # Frame header: magic (4), descriptor (1), [window (1)], content size (1 byte when < 256).
    descriptor = mutated[frame_at + 4]
    size_at = frame_at + 5 + (0 if descriptor & 0x20 else 1)
    assert mutated[size_at] == 40
    mutated[size_at] = 4
    with pytest.raises(CorruptChunk, match=NAME + " plane 1 (does not decompress|decompressed to more than 4 bytes)"):
        decode(bytes(mutated), expected_length=8, name=NAME)


@DECODERS
def test_a_bad_second_zstd_plane_is_refused_while_the_first_is_held(decode):
    """Both planes are decoded before the merge: a failure on the second names it, whatever the first holds."""
    good, cut = _frame(4), _frame(4)[:-3]
    obj = planes_object(8, 2, [(1, len(good)), (1, len(cut))], good + cut)
    with pytest.raises(CorruptChunk, match=NAME + " plane 1 (does not decompress|decompressed to)"):
        decode(obj, expected_length=8, name=NAME)
    obj = codec.encode(WEIGHTS)  # the pool still hands out sound buffers afterwards
    assert bytes(decode(obj, expected_length=len(WEIGHTS))) == WEIGHTS


@FUZZ
@given(st.data())
def test_random_plane_tables_are_refused_or_decode_within_the_chunk_size(data):
    expected = data.draw(st.integers(0, 1 << 16))
    width = data.draw(st.sampled_from([0, 1, 2, 3, 4, 5, 255]))
    entries = [(data.draw(st.sampled_from([0, 1, 2, 255])), data.draw(st.integers(0, (1 << 32) - 1)))
               for _ in range(min(width, 6))]
    body = data.draw(st.binary(max_size=3000))
    obj = planes_object(expected, width, entries, body)
    _decode_within_bounds(obj, expected)


@FUZZ
@given(st.data())
def test_mutated_planes_objects_decode_to_the_original_or_are_refused(data):
    raw = WEIGHTS[:data.draw(st.integers(16_384, len(WEIGHTS)))]
    obj = bytearray(codec.encode(raw))
    assert codec.read_header(obj)[0] == codec.PLANES
    for _ in range(data.draw(st.integers(1, 4))):
        # most mutations land in the header and plane table, where the decoder has the most to check
        at = data.draw(st.one_of(st.integers(0, 60), st.integers(0, len(obj) - 1)))
        obj[at] = data.draw(st.integers(0, 255))
    _decode_within_bounds(bytes(obj), len(raw))


def test_threads_decoding_planes_share_as_many_plane_buffers_as_decode_at_once():
    """Plane buffers come from a pool: 16 threads decoding one after another make one buffer, not 16."""
    import threading
    obj = codec.encode(WEIGHTS)
    made = []
    real = byteplanes._new_plane_buffer
    byteplanes._new_plane_buffer = lambda size: made.append(size) or real(size)
    byteplanes._plane_buffers.clear()
    try:
        lock = threading.Lock()

        def one():
            with lock:  # one at a time, as the CPU semaphore of a get on one core
                assert bytes(codec.decode_into(obj, bytearray(len(WEIGHTS)), expected_length=len(WEIGHTS))) == WEIGHTS

        threads = [threading.Thread(target=one) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        byteplanes._new_plane_buffer = real
    assert len(made) == 1


def test_a_bad_table_is_refused_before_the_output_is_allocated():
    """decode allocates the chunk only for an object whose plane table holds up."""
    expected = 64 << 20
    obj = planes_object(expected, 2, [(0, 4), (0, 4)], b"x" * 8)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptChunk, match="raw plane 0 holds 4 bytes"):
            codec.decode(obj, expected_length=expected, name=NAME)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def _decode_within_bounds(obj: bytes, expected: int) -> None:
    """Decode every way: a CorruptChunk or ``expected`` bytes; Python allocations stay within the
    chunk size and no plane buffer is made larger than half of it."""
    asked = []
    real = byteplanes._new_plane_buffer

    def recording(size):
        asked.append(size)
        return real(size)

    byteplanes._new_plane_buffer = recording
    try:
        out = bytearray(expected)
        for decode in (lambda: codec.decode(obj, expected_length=expected, name=NAME),
                       lambda: codec.decode_into(obj, out, expected_length=expected, name=NAME)):
            tracemalloc.start()
            try:
                result = decode()
                assert len(result) == expected
            except CorruptChunk as exc:
                assert NAME in str(exc)
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            assert peak <= expected + 256 * 1024, f"decoding allocated {peak} bytes for a {expected}-byte chunk"
    finally:
        byteplanes._new_plane_buffer = real
    assert all(size <= (expected + 1) // 2 for size in asked), asked
