"""Chunk objects: a self-describing 16-byte header, then the payload.

    magic  b"CASc"   4 bytes
    format 1         1 byte   (format version of the object)
    codec            1 byte   (0 raw, 1 zstd, 2 planes: byte planes each zstd or raw, see cas.byteplanes)
    reserved         2 bytes  (zero)
    raw_length       8 bytes  little-endian: length of the decoded chunk

An object can be checked and decoded without any manifest, and two writers that chose different
codecs for the same content are both readable. Decoding never trusts a length it has not bounded:
the caller passes the length it expects, and a header or zstd frame claiming more is rejected
before anything is allocated.

Which codec a chunk gets follows the put's codec policy: ``zstd`` (zstd, or raw when zstd does not
save ``min_saving``: what every cas before the planes codec wrote), ``raw`` (always raw) or ``auto``
(the default: ``cas.byteplanes.predict`` looks at a small sample and picks byte planes where they
beat plain zstd, as on float weights; anything else goes the ``zstd`` way). Every policy writes
objects any reader decodes; the reader never needs the policy.
"""

from __future__ import annotations

import struct
import threading

import zstandard

from . import byteplanes
from .zstdio import decompress_into, read_fully
from .errors import CorruptChunk

MAGIC = b"CASc"
OBJECT_FORMAT = 1
HEADER = struct.Struct("<4sBBHQ")
HEADER_SIZE = HEADER.size  # 16

RAW = 0
ZSTD = 1
PLANES = 2
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", PLANES: "planes"}

POLICIES = ("auto", "zstd", "raw")
DEFAULT_POLICY = "auto"

DEFAULT_LEVEL = 3
# Store a chunk raw unless zstd saves at least this share of it: decoding raw is a copy, and
# random float weights often compress by only a few percent.
DEFAULT_MIN_SAVING = 0.02

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # ZstdCompressor is not safe to share between threads; keep one per thread and level.
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def check_min_saving(min_saving: float) -> float:
    if not isinstance(min_saving, (int, float)) or not 0.0 <= min_saving <= 1.0:  # also refuses NaN
        raise ValueError(f"min_saving must be a fraction from 0 to 1 (0: keep any saving, 1: always raw), "
                         f"got {min_saving!r}")
    return float(min_saving)


def check_level(level: int) -> int:
    if not isinstance(level, int) or not 1 <= level <= 22:
        raise ValueError(f"zstd level must be an integer from 1 to 22, got {level!r}")
    return level


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"codec must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy


def encode(raw, *, policy: str = DEFAULT_POLICY, level: int = DEFAULT_LEVEL,
           min_saving: float = DEFAULT_MIN_SAVING) -> bytes:
    """Encode raw chunk bytes into a stored object (``encode_into`` a fresh buffer: the same objects)."""
    out = bytearray(encoded_capacity(len(memoryview(raw).cast("B"))))
    return bytes(memoryview(out)[:encode_into(raw, out, policy=policy, level=level, min_saving=min_saving)])


def encoded_capacity(raw_length: int) -> int:
    """Bytes an output buffer needs for ``encode_into`` of a chunk this long, and the most any
    object of a chunk this long can hold (header + raw payload + the widest plane table)."""
    return HEADER_SIZE + raw_length + byteplanes.table_size(max(byteplanes.WIDTHS))


def encode_into(raw, out, *, policy: str = DEFAULT_POLICY, level: int = DEFAULT_LEVEL,
                min_saving: float = DEFAULT_MIN_SAVING) -> int:
    """Encode ``raw`` into the writable buffer ``out`` by ``policy``; returns the object's length in ``out``.

    Built in a buffer the caller reuses: zstd streams straight into ``out`` instead of into a fresh
    bytes object. Fresh memory is the dear part: one-shot compression into a new buffer for every
    4 MiB chunk cost ~25% more CPU than this on our VMs (bench/README.md). Compression stops as
    soon as its output passes the size at which the chunk would be stored raw anyway (it must save
    ``min_saving`` of the chunk). With policy ``auto``, a chunk the predictor gives to byte planes
    that then do not save enough tries zstd next. ``out`` must hold ``encoded_capacity(len(raw))``.
    """
    check_policy(policy)
    raw = memoryview(raw).cast("B")
    raw_length = len(raw)
    out = memoryview(out)
    if len(out) < encoded_capacity(raw_length):
        raise ValueError(f"output buffer of {len(out)} bytes is too small for a {raw_length}-byte chunk")
    limit = int(raw_length * (1.0 - check_min_saving(min_saving)))  # the most compressed bytes worth keeping
    if raw_length and limit > 0 and policy == "auto":
        choice = byteplanes.predict(raw, plain_compress=_compressor(level).compress, min_saving=min_saving)
        if choice is not None:
            width, raw_flags = choice
            written = byteplanes.encode_into(raw, out[HEADER_SIZE:], width=width, raw_flags=raw_flags,
                                             limit=limit, min_saving=min_saving)
            if written:
                HEADER.pack_into(out, 0, MAGIC, OBJECT_FORMAT, PLANES, 0, raw_length)
                return HEADER_SIZE + written
    if raw_length and limit > 0 and policy != "raw":
        reader = _compressor(level).stream_reader(raw, size=raw_length)
        written = read_fully(reader, out[HEADER_SIZE:HEADER_SIZE + limit])
        if written < limit or not reader.readinto(bytearray(1)):
            HEADER.pack_into(out, 0, MAGIC, OBJECT_FORMAT, ZSTD, 0, raw_length)
            return HEADER_SIZE + written
    HEADER.pack_into(out, 0, MAGIC, OBJECT_FORMAT, RAW, 0, raw_length)
    out[HEADER_SIZE:HEADER_SIZE + raw_length] = raw
    return HEADER_SIZE + raw_length


def read_header(obj, *, name: str = "chunk object") -> tuple[int, int]:
    """Return (codec, raw_length) from an object's header; CorruptChunk if it is not one."""
    if len(obj) < HEADER_SIZE:
        raise CorruptChunk(f"{name} is {len(obj)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, fmt, codec, _reserved, raw_length = HEADER.unpack_from(obj, 0)
    if magic != MAGIC:
        raise CorruptChunk(f"{name} does not start with the cas chunk magic")
    if fmt != OBJECT_FORMAT:
        raise CorruptChunk(f"{name} has object format {fmt}; this cas reads format {OBJECT_FORMAT} (upgrade cas?)")
    if codec not in CODEC_NAMES:
        raise CorruptChunk(f"{name} uses unknown codec id {codec} (upgrade cas?)")
    return codec, raw_length


def _checked_payload(obj, expected_length: int, name: str) -> tuple[int, memoryview]:
    """(codec, payload) of a well-formed object of that raw length (zstd frame size checked too)."""
    codec, raw_length = read_header(obj, name=name)
    if raw_length != expected_length:
        raise CorruptChunk(f"{name} header says {raw_length} bytes, the manifest says {expected_length}")
    payload = memoryview(obj)[HEADER_SIZE:]
    if codec == RAW:
        if len(payload) != raw_length:
            raise CorruptChunk(f"{name} holds {len(payload)} raw bytes, its header says {raw_length}")
        return codec, payload
    if codec == PLANES:
        byteplanes.read_table(payload, raw_length, name)  # refuse a bad table before anything is allocated
        return codec, payload
    # zstd: bound the output by the length we expect before zstd allocates anything.
    try:
        frame_size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CorruptChunk(f"{name} is not a valid zstd frame: {exc}") from None
    if frame_size != raw_length:
        raise CorruptChunk(f"{name} zstd frame claims {frame_size} bytes, its header says {raw_length}")
    return codec, payload


def decode(obj, *, expected_length: int, name: str = "chunk object"):
    """Decode a stored object whose raw length must be ``expected_length``; returns a bytes-like.

    A raw payload comes back as a memoryview into ``obj`` (no copy), a zstd or planes one in a new
    bytearray. Raises CorruptChunk for anything that is not a well-formed object of that length
    (the same verdicts as ``decode_into``). The caller still verifies the digest.
    """
    codec, payload = _checked_payload(obj, expected_length, name)
    if codec == RAW:
        return payload
    out = bytearray(expected_length)
    if codec == PLANES:
        byteplanes.decode_into(payload, out, expected_length, name)
    else:
        decompress_into(payload, memoryview(out), name)
    return out


def decode_into(obj, out, *, expected_length: int, name: str = "chunk object") -> memoryview:
    """Decode like ``decode``, into the caller's reusable buffer; returns ``out[:expected_length]``.

    The output is bounded by the buffer: a frame that would decode to more (or less) than
    ``expected_length`` is CorruptChunk, and nothing is written past ``expected_length``.
    """
    codec, payload = _checked_payload(obj, expected_length, name)
    view = memoryview(out)[:expected_length]
    if len(view) < expected_length:
        raise ValueError(f"output buffer of {len(out)} bytes is too small for a {expected_length}-byte chunk")
    if codec == RAW:
        view[:] = payload
    elif codec == PLANES:
        byteplanes.decode_into(payload, out, expected_length, name)
    else:
        decompress_into(payload, view, name)
    return view
