"""The pure core: names, chunk boundaries, the chunk object codec, the manifest format."""

import os

import msgpack
import pytest
import zstandard

from cas import codec
from cas.chunking import fixed_chunks
from cas.digest import digest
from cas.errors import BadManifest, BadName, CorruptChunk
from cas.manifest import FileEntry, Manifest, pack, unpack
from cas.names import Ref, check_name, parse_ref


# -- names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "..", ".", ".hidden", "/abs", "a/b", "a:b", "a@b", "a\nb", "tab\t", "x" * 129,
                                 "sp ace", "é"])
def test_bad_names_are_refused_with_the_kind_in_the_message(bad):
    with pytest.raises(BadName, match="model name"):
        check_name(bad, "model")


def test_good_names_pass():
    for good in ("resnet50", "ResNet-50_v2.1", "7", "a" * 128):
        assert check_name(good, "model") == good


def test_refs_parse_into_model_and_version_or_tag():
    assert parse_ref("m") == Ref("m", tag="latest")
    assert parse_ref("m@3") == Ref("m", version="3")
    assert parse_ref("m:prod") == Ref("m", tag="prod")
    for bad in ("m@", "m:", "@3", "m@1:2", "m@../x", "m:a:b"):
        with pytest.raises(BadName):
            parse_ref(bad)


# -- chunking ----------------------------------------------------------------------------------

def test_fixed_chunks_cover_the_file_exactly():
    assert list(fixed_chunks(10, 4)) == [(0, 4), (4, 4), (8, 2)]
    assert list(fixed_chunks(8, 4)) == [(0, 4), (4, 4)]
    assert list(fixed_chunks(0, 4)) == []


# -- codec -------------------------------------------------------------------------------------
# Every codec test runs both ways of encoding (one-shot into fresh bytes, streamed into a reused
# buffer) and of decoding: the objects must be interchangeable.

def encode_into_bytes(raw, **options) -> bytes:
    out = bytearray(codec.encoded_capacity(len(raw)) + 7)  # a roomier buffer than needed is fine
    return bytes(out[:codec.encode_into(raw, out, **options)])


def decode_into_bytes(obj, *, expected_length: int) -> bytes:
    out = bytearray(b"\xee" * (expected_length + 64))
    view = codec.decode_into(obj, out, expected_length=expected_length)
    assert out[expected_length:] == b"\xee" * 64, "decode_into wrote past the chunk's length"
    return bytes(view)


ENCODERS = pytest.mark.parametrize("encode", [codec.encode, encode_into_bytes], ids=["oneshot", "into"])
DECODERS = pytest.mark.parametrize("decode", [codec.decode, decode_into_bytes], ids=["oneshot", "into"])


@ENCODERS
@DECODERS
def test_compressible_chunk_is_stored_zstd_and_round_trips(encode, decode):
    raw = b"weights " * 100_000
    obj = encode(raw, level=3)
    assert codec.read_header(obj) == (codec.ZSTD, len(raw))
    assert len(obj) < len(raw) // 10
    assert decode(obj, expected_length=len(raw)) == raw


@ENCODERS
@DECODERS
def test_incompressible_chunk_is_stored_raw(encode, decode):
    raw = os.urandom(200_000)
    obj = encode(raw, level=3)
    assert codec.read_header(obj) == (codec.RAW, len(raw))
    assert len(obj) == len(raw) + codec.HEADER_SIZE
    assert decode(obj, expected_length=len(raw)) == raw


@ENCODERS
def test_a_chunk_saving_less_than_min_saving_is_stored_raw(encode):
    raw = os.urandom(100_000) + bytes(3_000)  # zstd saves ~3%
    assert codec.read_header(encode(raw, min_saving=0.02))[0] == codec.ZSTD
    assert codec.read_header(encode(raw, min_saving=0.05))[0] == codec.RAW


@DECODERS
def test_decoder_reads_objects_from_writers_that_chose_other_codecs(decode):
    raw = b"abc" * 50_000
    as_raw = codec.encode(raw, min_saving=1.0)  # a writer that never compresses
    as_zstd = codec.encode(raw, level=19)
    streamed = encode_into_bytes(raw, level=3)
    assert codec.read_header(as_raw)[0] == codec.RAW
    assert decode(as_raw, expected_length=len(raw)) == decode(as_zstd, expected_length=len(raw)) == raw
    assert decode(streamed, expected_length=len(raw)) == raw


@pytest.mark.parametrize("bad", [-1.0, -0.01, 1.5, float("nan"), "0.1"])
def test_min_saving_outside_0_to_1_is_refused_not_stored_as_a_cut_frame(bad):
    raw = os.urandom(100_000)
    with pytest.raises(ValueError, match="min_saving"):
        codec.encode_into(raw, bytearray(codec.encoded_capacity(len(raw))), min_saving=bad)
    with pytest.raises(ValueError, match="min_saving"):
        codec.encode(raw, min_saving=bad)


def test_into_buffers_that_are_too_small_are_refused():
    raw = b"x" * 10_000
    with pytest.raises(ValueError, match="too small"):
        codec.encode_into(raw, bytearray(codec.encoded_capacity(len(raw)) - 1))
    with pytest.raises(ValueError, match="too small"):
        codec.decode_into(codec.encode(raw), bytearray(9_999), expected_length=10_000)


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o[:10], "shorter than"),
    (lambda o: b"XXXX" + o[4:], "magic"),
    (lambda o: o[:4] + bytes([9]) + o[5:], "object format 9"),
    (lambda o: o[:5] + bytes([7]) + o[6:], "unknown codec"),
    (lambda o: o[:-5], "frame|decompress"),
])
@DECODERS
def test_damaged_objects_raise_corrupt_chunk(mutate, message, decode):
    raw = b"0123456789" * 10_000
    obj = codec.encode(raw)
    with pytest.raises(CorruptChunk, match=message):
        decode(mutate(obj), expected_length=len(raw))


@DECODERS
def test_a_header_claiming_a_huge_size_is_refused_before_allocating(decode):
    raw = b"x" * 1000
    obj = bytearray(codec.encode(raw))
    obj[8:16] = (1 << 40).to_bytes(8, "little")  # claims 1 TiB
    with pytest.raises(CorruptChunk, match="manifest says 1000"):
        decode(bytes(obj), expected_length=1000)
    # and a zstd frame that claims more than the header: also refused up front
    lying = codec.HEADER.pack(codec.MAGIC, 1, codec.ZSTD, 0, 1000) + zstandard.ZstdCompressor().compress(b"y" * 5000)
    with pytest.raises(CorruptChunk, match="frame claims 5000"):
        decode(lying, expected_length=1000)


# -- manifest ----------------------------------------------------------------------------------

def _manifest(**kw):
    data = b"a" * 10
    entry = FileEntry("model.keras", 10, 0o644, (digest(data[:6]), digest(data[6:])), (6, 4))
    fields = dict(model="m", version="1", kind="file", chunk_size=6, level=3, files=(entry,), metadata={"k": 1})
    fields.update(kw)
    return Manifest(**fields)


def test_manifest_round_trips():
    m = _manifest()
    assert unpack(pack(m)) == m


def test_manifest_of_a_directory_with_empty_dirs_round_trips():
    e1 = FileEntry("saved_model.pb", 3, 0o644, (digest(b"abc"),), (3,))
    e2 = FileEntry("variables/variables.index", 0, 0o600, (), ())
    m = _manifest(kind="dir", files=(e1, e2), dirs=("assets",))
    assert unpack(pack(m)) == m


def _doc(**changes):
    doc = msgpack.unpackb(pack(_manifest()), raw=False)
    doc.pop("check")  # edited by hand below: a hostile writer leaves no checksum
    doc.update(changes)
    return doc


def _file(**changes):
    doc = _doc()
    doc["files"][0].update(changes)
    return msgpack.packb(doc, use_bin_type=True)


@pytest.mark.parametrize("data, message", [
    (b"", "not valid msgpack"),
    (pack(_manifest())[:-7], "not valid msgpack"),
    (b"\xc1garbage", "not valid msgpack"),
    (msgpack.packb([1, 2, 3]), "not a msgpack map"),
    (msgpack.packb(_doc(format=2), use_bin_type=True), "format 2"),
    (msgpack.packb(_doc(hash="md5"), use_bin_type=True), "unknown hash"),
    (_file(path="../evil"), "leaves or re-enters"),
    (_file(path="/etc/passwd"), "unsafe file path"),
    (_file(path="a/./b"), "leaves or re-enters"),
    (_file(path="a\\..\\b"), "unsafe"),
    (_file(size=11), "add up to 10"),
    (_file(lengths=[6]), "lists 2 digests but 1 lengths"),
    (_file(digests=b"short"), "bad digest list"),
    (_file(mode=-1), "invalid mode"),
    (msgpack.packb({k: v for k, v in _doc().items() if k != "files"}, use_bin_type=True), "KeyError"),
])
def test_bad_manifests_are_refused_naming_the_problem(data, message):
    with pytest.raises(BadManifest, match=message):
        unpack(data, name="manifest of m@1")


def test_manifest_with_conflicting_paths_is_refused():
    a = FileEntry("x", 0, 0o644, (), ())
    b = FileEntry("x/y", 0, 0o644, (), ())
    with pytest.raises(BadManifest, match="which is a file"):
        unpack(pack(_manifest(kind="dir", files=(a, b))))
    with pytest.raises(BadManifest, match="listed twice"):
        unpack(pack(_manifest(kind="dir", files=(a, a))))
