"""Where a model file's tensors and members start: the boundaries the ``auto`` chunker restarts at.

Each parser reads only a file's metadata (headers, directories, indexes), through a ``Region``
that refuses reads outside the file and caps how much metadata one file may make it read, and
returns the offsets where a fixed-size run should restart. Anything unexpected (a bad magic, a
member or tensor that lies past the end, a truncated index, too many entries) raises
``FormatError``; cas.planning then cuts that file ``fixed`` and logs why. None of this decides
what a chunk holds: a wrong boundary costs dedup, never data, because pieces always cover the
file exactly and every piece is hashed from the real bytes.

Formats:

- zip (``.keras``, ``.npz``, PyTorch's zip files): every member's header starts a run, and a
  STORED member's data does too; a STORED member that is itself HDF5 or ``.npy`` (a ``.keras``
  holds ``model.weights.h5``) is parsed in place;
- HDF5 (``.h5``): the start and end of every contiguous dataset of at least MIN_TENSOR bytes,
  read by a small parser here (no h5py needed);
- safetensors: the start and end of every tensor of at least MIN_TENSOR bytes (JSON header);
- ``.npy``: the start of the array data;
- TFLite (``.tflite``): the start and end of every buffer of at least MIN_TENSOR bytes;
- ONNX (``.onnx``): the start and end of every initializer's data of at least MIN_TENSOR bytes;
  the external data file of a large model (``model.onnx.data`` beside ``model.onnx``): the same,
  from the offsets its model lists;
- GGUF (llama.cpp's ``.gguf``): the start and end of every tensor of at least MIN_TENSOR bytes,
  from the tensor infos after the key-value metadata (versions 2 and 3);
- a TensorFlow checkpoint shard (a SavedModel's ``variables/variables.data-*``): the start and end
  of every tensor of at least MIN_TENSOR bytes, from the BundleEntryProto records of the sibling
  ``.index`` (a LevelDB-format table, read by a small parser here).

A tensor's end matters as much as its start: in an ``.h5`` file the object headers between
tensors hold absolute addresses, so they change whenever anything before them grew; a piece that
mixed them with a tensor's tail would be stored again each version.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable

from .chunking import MIN_TENSOR

MAX_METADATA_READ = 64 << 20  # bytes of metadata one file may make a parser read, all reads together
MAX_ENTRIES = 200_000  # zip members, HDF5 objects, tensors or index records per file
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
GGUF_MAGIC = b"GGUF"
ZIP_LOCAL = b"PK\x03\x04"
ZIP_CENTRAL = b"PK\x01\x02"
ZIP_END = b"PK\x05\x06"


class FormatError(ValueError):
    """The file is not in the format its first bytes suggest, or is hostile: cut it fixed."""


class Region:
    """Bounded reads of ``size`` bytes of an open file starting at ``base``.

    Every read must lie inside the region; all reads through a region and the regions cut from
    it share one budget, so no file can make planning read (or allocate) more than
    MAX_METADATA_READ bytes.
    """

    def __init__(self, fd: int, base: int, size: int, budget: list[int] | None = None) -> None:
        self.fd, self.base, self.size = fd, base, size
        self.budget = budget if budget is not None else [MAX_METADATA_READ]

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise FormatError(f"a read of {n} bytes at {offset} lies outside the {self.size}-byte region")
        if n > self.budget[0]:
            raise FormatError(f"the metadata is larger than the {MAX_METADATA_READ}-byte limit")
        self.budget[0] -= n
        data = os.pread(self.fd, n, self.base + offset)
        if len(data) != n:
            raise FormatError("the file is shorter than its size (it changed while being read)")
        return data

    def sub(self, offset: int, size: int) -> "Region":
        if offset < 0 or size < 0 or offset + size > self.size:
            raise FormatError(f"a member of {size} bytes at {offset} lies outside the {self.size}-byte region")
        return Region(self.fd, self.base + offset, size, self.budget)


def _check_tensor(region: Region, offset: int, length: int, what: str) -> None:
    if not (0 <= offset and 0 <= length and offset + length <= region.size):
        raise FormatError(f"{what} claims bytes {offset}..{offset + length}, past the {region.size}-byte end")


# -- detection -----------------------------------------------------------------------------------

def sniff(region: Region) -> str | None:
    """The format of a region from its first bytes: "hdf5", "zip", "npy", "safetensors", "gguf",
    "tflite" or None."""
    head = region.read(0, min(16, region.size))
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(ZIP_LOCAL) or head.startswith(ZIP_END):
        return "zip"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    if head[4:8] == TFLITE_ID:
        return "tflite"
    if len(head) >= 9 and head[8:9] == b"{":
        n = struct.unpack_from("<Q", head)[0]
        if 2 <= n <= region.size - 8:
            return "safetensors"
    at = 512  # an HDF5 file may start with a user block of 512 bytes times a power of two
    while at + 8 <= region.size:
        if region.read(at, 8) == HDF5_MAGIC:
            return "hdf5"
        at *= 2
    return None


SHARD = re.compile(r"^(?P<prefix>.*)\.data-(?P<shard>\d{1,9})-of-(?P<total>\d{1,9})$")


def boundaries(path: str) -> tuple[str, list[int]] | None:
    """(format, restart offsets) of the file at ``path``, or None for a format cas does not know.

    Raises FormatError for a file that looks like a known format but does not parse.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        region = Region(fd, 0, os.fstat(fd).st_size)
        if region.size == 0:
            return None
        shard = SHARD.match(os.path.basename(path))
        index = os.path.join(os.path.dirname(path), shard["prefix"] + ".index") if shard else ""
        if shard and os.path.isfile(index):
            return "tf-checkpoint", checkpoint_boundaries(index, int(shard["shard"]), region)
        if path.lower().endswith(".onnx"):  # protobuf has no magic: known by its name
            return "onnx", onnx_boundaries(region)
        external = onnx_external_boundaries(path, region)
        if external is not None:
            return "onnx-data", external
        kind = sniff(region)
        if kind is None:
            return None
        return kind, PARSERS[kind](region)
    except FormatError:
        raise
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, struct.error, RecursionError) as exc:
        # a structure shorter or stranger than the parser expected: the file is damaged, not cas
        raise FormatError(f"damaged {type(exc).__name__}: {exc}") from None
    finally:
        os.close(fd)


# -- zip -------------------------------------------------------------------------------------------

ZIP64_END = b"PK\x06\x06"
ZIP64_LOCATOR = b"PK\x06\x07"
ZIP64_EXTRA = 0x0001


def _zip_directory(region: Region, tail: bytes, at: int) -> tuple[int, int, int]:
    """(entries, directory size, directory offset) from the end record at ``tail[at:]``, or from the
    zip64 end record its locator points at when a field overflowed."""
    (_sig, _disk, _cd_disk, _n_here, n_entries, cd_size, cd_offset, _clen) = struct.unpack_from("<4sHHHHIIH", tail, at)
    if 0xFFFF != n_entries and 0xFFFFFFFF not in (cd_size, cd_offset):
        return n_entries, cd_size, cd_offset
    if at < 20 or tail[at - 20:at - 16] != ZIP64_LOCATOR:
        raise FormatError("zip end record overflows but has no zip64 locator")
    end64 = struct.unpack_from("<Q", tail, at - 20 + 8)[0]
    record = region.read(end64, 56)
    if record[:4] != ZIP64_END:
        raise FormatError("no zip64 end record where its locator says")
    n_entries, cd_size, cd_offset = struct.unpack_from("<QQQ", record, 32)
    return n_entries, cd_size, cd_offset


def _zip64_fields(extra: bytes, values: list[int]) -> list[int]:
    """Replace the 0xFFFFFFFF values of (uncompressed size, compressed size, local offset) from the
    entry's zip64 extra field, in that order (APPNOTE 4.5.3)."""
    if 0xFFFFFFFF not in values:
        return values
    pos = 0
    while pos + 4 <= len(extra):
        kind, n = struct.unpack_from("<HH", extra, pos)
        if kind == ZIP64_EXTRA:
            body, out, k = extra[pos + 4:pos + 4 + n], list(values), 0
            for i, v in enumerate(values):
                if v == 0xFFFFFFFF:
                    if k + 8 > len(body):
                        raise FormatError("zip64 extra field is too short")
                    out[i] = struct.unpack_from("<Q", body, k)[0]
                    k += 8
            return out
        pos += 4 + n
    raise FormatError("zip entry overflows but has no zip64 extra field")


def zip_boundaries(region: Region) -> list[int]:
    """Every member's local header; a STORED member's data and its end; boundaries inside a STORED
    HDF5, .npy or safetensors member. Read from the central directory (zip64 included), each local
    header checked against it."""
    tail_size = min(region.size, 22 + 0xFFFF)
    tail = region.read(region.size - tail_size, tail_size)
    at = tail.rfind(ZIP_END)
    if at < 0 or at + 22 > len(tail):
        raise FormatError("no zip end-of-central-directory record")
    n_entries, cd_size, cd_offset = _zip_directory(region, tail, at)
    if n_entries > MAX_ENTRIES:
        raise FormatError(f"zip lists {n_entries} members, over the {MAX_ENTRIES} limit")
    cd = region.read(cd_offset, cd_size)
    out: list[int] = []
    pos = 0
    for _ in range(n_entries):
        if cd[pos:pos + 4] != ZIP_CENTRAL or pos + 46 > len(cd):
            raise FormatError("zip central directory entry is damaged")
        (method, csize, usize, name_len, extra_len, comment_len, local_offset) = (
            struct.unpack_from("<H", cd, pos + 10)[0], *struct.unpack_from("<II", cd, pos + 20),
            *struct.unpack_from("<HHH", cd, pos + 28), struct.unpack_from("<I", cd, pos + 42)[0])
        name = cd[pos + 46:pos + 46 + name_len]
        extra = cd[pos + 46 + name_len:pos + 46 + name_len + extra_len]
        pos += 46 + name_len + extra_len + comment_len
        usize, csize, local_offset = _zip64_fields(extra, [usize, csize, local_offset])
        local = region.read(local_offset, 30)
        if local[:4] != ZIP_LOCAL:
            raise FormatError(f"zip member {name!r}: no local header where the directory says")
        l_name, l_extra = struct.unpack_from("<HH", local, 26)
        if region.read(local_offset + 30, l_name) != name:
            raise FormatError(f"zip member {name!r}: local header names another file")
        data_start = local_offset + 30 + l_name + l_extra
        _check_tensor(region, data_start, csize, f"zip member {name!r}")
        out.append(local_offset)
        if method == 0 and csize:
            if csize != usize:
                raise FormatError(f"zip member {name!r} is stored but its sizes differ")
            out += [data_start, data_start + csize]
            if csize >= MIN_TENSOR:
                member = region.sub(data_start, csize)
                kind = sniff(member)
                if kind in ("hdf5", "npy", "safetensors"):
                    out += [data_start + b for b in PARSERS[kind](member)]
    return out


# -- npy ------------------------------------------------------------------------------------------

MAX_NPY_HEADER = 1 << 20


def npy_boundaries(region: Region) -> list[int]:
    head = region.read(0, 12 if region.size >= 12 else region.size)
    if len(head) < 10 or not head.startswith(NPY_MAGIC):
        raise FormatError("not an .npy file")
    major = head[6]
    if major == 1:
        start = 10 + struct.unpack_from("<H", head, 8)[0]
    elif major in (2, 3) and len(head) >= 12:
        start = 12 + struct.unpack_from("<I", head, 8)[0]
    else:
        raise FormatError(f"unknown .npy version {major}")
    if start > MAX_NPY_HEADER or start > region.size:
        raise FormatError(".npy header is longer than the file or the limit")
    return [start]


# -- safetensors ----------------------------------------------------------------------------------

MAX_SAFETENSORS_HEADER = 100 << 20  # the format's own limit


def safetensors_boundaries(region: Region) -> list[int]:
    n = struct.unpack("<Q", region.read(0, 8))[0]
    if n > MAX_SAFETENSORS_HEADER or 8 + n > region.size:
        raise FormatError("safetensors header is longer than the file or the format's limit")
    try:
        header = json.loads(region.read(8, n))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("safetensors header is not JSON") from None
    if not isinstance(header, dict) or len(header) > MAX_ENTRIES:
        raise FormatError("safetensors header is not a map of at most MAX_ENTRIES tensors")
    data_start = 8 + n
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and offsets[0] <= offsets[1]):
            raise FormatError(f"safetensors tensor {name!r} has no valid data_offsets")
        begin, end = offsets
        _check_tensor(region, data_start + begin, end - begin, f"safetensors tensor {name!r}")
        if end - begin >= MIN_TENSOR:
            out += [data_start + begin, data_start + end]
    return out


# -- sequential metadata ---------------------------------------------------------------------------

METADATA_BLOCK = 1 << 20  # GGUF and ONNX metadata is read in blocks of this size
# ... but after a skip past the block (an ONNX initializer's data), only this much: the next field's
# tag and length are a few bytes, and a block per skipped tensor would spend the MAX_METADATA_READ
# budget after 64 tensors of over a block each (a BERT-base model) and cut the model fixed.
SKIP_BLOCK = 4096
MAX_ITEMS = MAX_ENTRIES * 64  # strings, values, fields and tensors one file's metadata may hold


class _Sequential:
    """Sequential reads of a region's metadata, a block at a time, with a count of items walked."""

    def __init__(self, region: Region) -> None:
        self.region, self.pos = region, 0
        self.block, self.block_at = b"", 0
        self.items = 0

    def take(self, n: int) -> tuple[bytes, int]:
        """(a buffer, the offset in it) holding the next ``n`` bytes."""
        start = self.pos - self.block_at
        if start + n > len(self.block):
            block = SKIP_BLOCK if start > len(self.block) else METADATA_BLOCK
            want = min(max(n, block), self.region.size - self.pos)
            if want < n:
                raise FormatError("the metadata runs past the end of the file")
            self.block, self.block_at, start = self.region.read(self.pos, want), self.pos, 0
        self.pos += n
        return self.block, start

    def unpack(self, fmt: struct.Struct) -> tuple:
        buf, at = self.take(fmt.size)
        return fmt.unpack_from(buf, at)

    def skip(self, n: int) -> None:
        if n > self.region.size - self.pos:
            raise FormatError("the metadata runs past the end of the file")
        self.pos += n

    def count(self, n: int = 1) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            raise FormatError(f"the metadata holds more than {MAX_ITEMS} items")

    def varint(self) -> int:
        """A protobuf base-128 varint (at most 10 bytes)."""
        value = 0
        for shift in range(0, 70, 7):
            buf, at = self.take(1)
            byte = buf[at]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise FormatError("a varint runs past 10 bytes")


# -- GGUF -----------------------------------------------------------------------------------------
#
# llama.cpp's format (ggml docs/gguf.md): magic, version, tensor count, key-value count, the
# key-values, the tensor infos (name, dims, type, offset from the data section), then the data
# section, which starts at the next multiple of ``general.alignment`` (default 32). Tensors are
# contiguous in the data section, so each one ends where the next begins. A new chat template or
# a longer model name grows the key-values and shifts every tensor: the case ``auto`` is for.

GGUF_MAX_STRING = 1 << 24
GGUF_MAX_DIMS = 8
GGUF_DEFAULT_ALIGNMENT = 32
# value types: fixed sizes by type id; 8 is a string, 9 an array
_GGUF_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGUF_STRING, GGUF_ARRAY, GGUF_UINT32 = 8, 9, 4
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_GGUF_HEAD = struct.Struct("<4sIQQ")
_GGUF_ARRAY_HEAD = struct.Struct("<IQ")
_GGUF_TENSOR_TAIL = struct.Struct("<IQ")


def _gguf_string(r: _Sequential) -> bytes:
    (n,) = r.unpack(_U64)
    if n > GGUF_MAX_STRING:
        raise FormatError(f"a GGUF string claims {n} bytes")
    r.count()
    buf, at = r.take(n)
    return buf[at:at + n]


def _gguf_skip_value(r: _Sequential, kind: int, depth: int = 0) -> None:
    if kind in _GGUF_FIXED:
        r.skip(_GGUF_FIXED[kind])
    elif kind == GGUF_STRING:
        (n,) = r.unpack(_U64)
        r.count()
        r.skip(n)
    elif kind == GGUF_ARRAY and depth < 2:
        item, n = r.unpack(_GGUF_ARRAY_HEAD)
        if item in _GGUF_FIXED:  # a token-type table of 150k entries is skipped, not walked
            r.skip(n * _GGUF_FIXED[item])
            return
        r.count(n)
        for _ in range(n):
            _gguf_skip_value(r, item, depth + 1)
    else:
        raise FormatError(f"unknown GGUF value type {kind}")


def gguf_boundaries(region: Region) -> list[int]:
    r = _Sequential(region)
    _magic, version, n_tensors, n_values = r.unpack(_GGUF_HEAD)
    if version not in (2, 3):
        raise FormatError(f"GGUF version {version} (cas reads versions 2 and 3)")
    if n_tensors > MAX_ENTRIES or n_values > MAX_ENTRIES:
        raise FormatError(f"GGUF claims {n_tensors} tensors and {n_values} values, over the {MAX_ENTRIES} limit")
    alignment = GGUF_DEFAULT_ALIGNMENT
    for _ in range(n_values):
        key = _gguf_string(r)
        (kind,) = r.unpack(_U32)
        if key == b"general.alignment" and kind == GGUF_UINT32:
            (alignment,) = r.unpack(_U32)
            if not 0 < alignment <= 1 << 20:
                raise FormatError(f"GGUF alignment {alignment} is out of range")
        else:
            _gguf_skip_value(r, kind)
    offsets = []
    for _ in range(n_tensors):
        name = _gguf_string(r)
        (n_dims,) = r.unpack(_U32)
        if n_dims > GGUF_MAX_DIMS:
            raise FormatError(f"GGUF tensor {name[:64]!r} claims {n_dims} dimensions")
        r.skip(8 * n_dims)
        _type, offset = r.unpack(_GGUF_TENSOR_TAIL)
        offsets.append(offset)
    data_start = -(-r.pos // alignment) * alignment
    starts = sorted({data_start + o for o in offsets})
    if starts and starts[-1] > region.size:
        raise FormatError(f"a GGUF tensor starts at {starts[-1]}, past the {region.size}-byte end")
    out = [data_start] if data_start <= region.size else []
    for begin, end in zip(starts, [*starts[1:], region.size]):
        if end - begin >= MIN_TENSOR:
            out += [begin, end]
    return out


# -- ONNX -----------------------------------------------------------------------------------------
#
# An ONNX model (onnx/onnx.proto) is a protobuf ModelProto. Its graph (field 7, a GraphProto) holds
# the weights as initializers (GraphProto field 5, TensorProto), whose bytes are raw_data (field 9)
# or a packed repeated field (float_data 4, int32_data 5, int64_data 7, double_data 10, uint64_data
# 11). Protobuf writers emit fields in number order, so the graph's nodes (field 1) come before the
# initializers: a changed node or a new producer version shifts every weight. Only tags and
# lengths are read; a field's bytes are skipped.

ONNX_MODEL_GRAPH, ONNX_GRAPH_INITIALIZER = 7, 5
ONNX_TENSOR_DATA = frozenset({4, 5, 7, 9, 10, 11})
WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5


def _pb_fields(r: _Sequential, end: int):
    """Yield (field number, start, length) of each length-delimited field of the message ending at
    ``end``, skipping the other fields; after each, the reader continues from that field's end."""
    while r.pos < end:
        r.count()
        key = r.varint()
        field, wire = key >> 3, key & 7
        if wire == WIRE_VARINT:
            r.varint()
        elif wire == WIRE_I64:
            r.skip(8)
        elif wire == WIRE_I32:
            r.skip(4)
        elif wire == WIRE_LEN:
            n = r.varint()
            start = r.pos
            if n > end - start:
                raise FormatError(f"protobuf field {field} claims {n} bytes, past the end of its message")
            yield field, start, n
            r.pos = start + n
        else:
            raise FormatError(f"protobuf wire type {wire} (field {field}) is not used by ONNX")
    if r.pos != end:
        raise FormatError("a protobuf field runs past the end of its message")


ONNX_TENSOR_EXTERNAL = 13  # repeated StringStringEntryProto: key 1, value 2 ("location", "offset", "length")
ONNX_MAX_STRING = 4096


def _onnx_initializers(region: Region):
    """Yield, for every initializer of the model in ``region``: (its data's (start, length) spans in
    the model itself, its external_data entries as a dict of bytes)."""
    if region.read(0, min(1, region.size)) != b"\x08":
        raise FormatError("not an ONNX model: it does not start with its ir_version")
    r = _Sequential(region)
    for field, start, n in _pb_fields(r, region.size):
        if field != ONNX_MODEL_GRAPH:
            continue
        for g_field, g_start, g_n in _pb_fields(r, start + n):
            if g_field != ONNX_GRAPH_INITIALIZER:
                continue
            spans, external = [], {}
            for t_field, t_start, t_n in _pb_fields(r, g_start + g_n):
                if t_field in ONNX_TENSOR_DATA:
                    spans.append((t_start, t_n))
                elif t_field == ONNX_TENSOR_EXTERNAL and t_n <= 2 * ONNX_MAX_STRING:
                    entry = {}
                    for e_field, e_start, e_n in _pb_fields(r, t_start + t_n):
                        buf, at = r.take(e_n)
                        entry[e_field] = buf[at:at + e_n]
                    external[entry.get(1, b"")] = entry.get(2, b"")
            yield spans, external


def onnx_boundaries(region: Region) -> list[int]:
    out = []
    for spans, _external in _onnx_initializers(region):
        out += [b for start, n in spans if n >= MIN_TENSOR for b in (start, start + n)]
    return out


# A model over 2 GB keeps its weights in a file beside it (``model.onnx.data`` and the like), named
# in each initializer's external_data; its offsets cut that file. These are the names tried.
ONNX_DATA_SUFFIXES = (".data", "_data", ".bin", ".weights")


def onnx_external_boundaries(path: str, region: Region) -> list[int] | None:
    """Boundaries of ``path`` as the external data of the ONNX model beside it, or None if no model
    beside it (``model.onnx`` for ``model.onnx.data`` or ``model.data``) names it."""
    name = os.path.basename(path)
    stem = next((name[:-len(s)] for s in ONNX_DATA_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)
    if stem is None:
        return None
    model = os.path.join(os.path.dirname(path), stem if stem.endswith(".onnx") else stem + ".onnx")
    try:
        fd = os.open(model, os.O_RDONLY) if os.path.isfile(model) else None
    except OSError:  # unreadable (not ours): it names nothing we can see
        fd = None
    if fd is None:
        return None
    try:
        try:  # a model that does not parse names nothing: ``path`` is then cut by its own format
            externals = [external for _spans, external in
                         _onnx_initializers(Region(fd, 0, os.fstat(fd).st_size, region.budget))
                         if external.get(b"location", b"").decode("utf-8", "replace") == name]
        except (FormatError, IndexError, KeyError, TypeError, ValueError, OverflowError, struct.error):
            return None
        found, out = False, []
        for external in externals:
            found = True
            offset = int(external.get(b"offset", b"0"))
            length = int(external[b"length"]) if b"length" in external else region.size - offset
            _check_tensor(region, offset, length, f"ONNX external tensor at {offset}")
            if length >= MIN_TENSOR:
                out += [offset, offset + length]
        return out if found else None
    finally:
        os.close(fd)


# -- TFLite ---------------------------------------------------------------------------------------
#
# A TensorFlow Lite model (tensorflow/lite/schema/schema.fbs) is a flatbuffer: a u32 offset to the
# root table, then the identifier "TFL3". A table starts with an i32 back to its vtable (u16 vtable
# size, u16 table size, a u16 offset per field, 0 when absent); a vector or sub-table field holds a
# u32 offset from where it is stored; a vector is a u32 count and its elements. Model field 4 is
# ``buffers``, each a Buffer table whose field 0 ``data`` is a [ubyte] vector (16-byte aligned), or,
# in a model over 2 GB, fields 1 ``offset`` and 2 ``size`` (u64, from the start of the file). The
# converter writes the graph before the buffers, so a changed graph shifts every weight.

TFLITE_ID = b"TFL3"
TFLITE_MODEL_BUFFERS = 4
TFLITE_BUFFER_DATA, TFLITE_BUFFER_OFFSET, TFLITE_BUFFER_SIZE = 0, 1, 2
_U16, _I32 = struct.Struct("<H"), struct.Struct("<i")


class _Flatbuffer:
    """Bounded reads of flatbuffer tables and vectors through a Region."""

    def __init__(self, region: Region) -> None:
        self.region = region

    def u32(self, at: int) -> int:
        return _U32.unpack(self.region.read(at, 4))[0]

    def field(self, table: int, index: int) -> int | None:
        """Where field ``index`` of the table at ``table`` is stored, or None if it is absent."""
        vtable = table - _I32.unpack(self.region.read(table, 4))[0]
        size = _U16.unpack(self.region.read(vtable, 2))[0]
        if 4 + 2 * index + 2 > size:
            return None
        offset = _U16.unpack(self.region.read(vtable + 4 + 2 * index, 2))[0]
        return table + offset if offset else None

    def follow(self, at: int) -> int:
        """The position a u32 offset stored at ``at`` points to."""
        target = at + self.u32(at)
        if target >= self.region.size:
            raise FormatError(f"a flatbuffer offset at {at} points past the end")
        return target

    def vector(self, at: int) -> tuple[int, int]:
        """(first element, count) of the vector whose offset is stored at ``at``."""
        start = self.follow(at)
        return start + 4, self.u32(start)


def tflite_boundaries(region: Region) -> list[int]:
    fb = _Flatbuffer(region)
    if region.read(4, 4) != TFLITE_ID:
        raise FormatError("not a TFLite model: no TFL3 identifier")
    model = fb.follow(0)
    at = fb.field(model, TFLITE_MODEL_BUFFERS)
    if at is None:
        return []
    first, count = fb.vector(at)
    if count > MAX_ENTRIES:
        raise FormatError(f"TFLite model lists {count} buffers, over the {MAX_ENTRIES} limit")
    out = []
    for i in range(count):
        buffer = fb.follow(first + 4 * i)
        data = fb.field(buffer, TFLITE_BUFFER_DATA)
        if data is not None:
            start, length = fb.vector(data)
        else:
            where, size = fb.field(buffer, TFLITE_BUFFER_OFFSET), fb.field(buffer, TFLITE_BUFFER_SIZE)
            if where is None or size is None:
                continue
            start, length = _U64.unpack(region.read(where, 8))[0], _U64.unpack(region.read(size, 8))[0]
        _check_tensor(region, start, length, f"TFLite buffer {i}")
        if length >= MIN_TENSOR:
            out += [start, start + length]
    return out


# -- HDF5 -----------------------------------------------------------------------------------------
#
# A small reader of the HDF5 structures that lead from the superblock to every dataset's storage
# (HDF5 File Format Specification version 3.0: superblock versions 0-3, object headers versions 1
# and 2 with continuation blocks, old-style groups (symbol table: version 1 B-tree and symbol
# table nodes) and new-style compact groups (link messages), data layout message versions 3 and 4).
# Dense new-style groups (a fractal heap of links) are not read: such a file is cut fixed. Every
# object header is visited at most once (links may form cycles) and at most MAX_ENTRIES in all.

UNDEFINED = -1
MAX_HEADER_MESSAGES = 4096  # per object header (the format's 16-bit count is 65535)
MSG_LINK_INFO, MSG_LAYOUT, MSG_LINK, MSG_CONTINUATION, MSG_SYMBOL_TABLE = 0x02, 0x08, 0x06, 0x10, 0x11


class _H5:
    def __init__(self, region: Region) -> None:
        self.region = region
        self.base = self._find_superblock()
        sb = self.region.read(self.base, min(256, region.size - self.base))
        version = sb[8]
        if version in (0, 1):
            self.o, self.l = sb[13], sb[14]
            self._sizes_ok()
            pos = 24 + (4 if version == 1 else 0)
            base_address = self._addr(sb, pos)
            self.base = base_address if base_address != UNDEFINED else self.base
            root_entry = pos + 4 * self.o  # after base, free-space, end-of-file and driver addresses
            self.root = self._addr(sb, root_entry + self.l)
        elif version in (2, 3):
            self.o, self.l = sb[9], sb[10]
            self._sizes_ok()
            self.root = self._addr(sb, 12 + 3 * self.o)
        else:
            raise FormatError(f"HDF5 superblock version {version} is not read")

    def _find_superblock(self) -> int:
        at = 0
        while at + 8 <= self.region.size:
            if self.region.read(at, 8) == HDF5_MAGIC:
                return at
            at = 512 if at == 0 else at * 2
        raise FormatError("no HDF5 superblock")

    def _sizes_ok(self) -> None:
        if self.o not in (2, 4, 8) or self.l not in (2, 4, 8):
            raise FormatError(f"HDF5 offsets of {self.o} and lengths of {self.l} bytes are not read")

    @staticmethod
    def _uint(buf: bytes, pos: int, n: int) -> int:
        if pos + n > len(buf):
            raise FormatError("HDF5 structure is truncated")
        return int.from_bytes(buf[pos:pos + n], "little")

    def _addr(self, buf: bytes, pos: int) -> int:
        v = self._uint(buf, pos, self.o)
        return UNDEFINED if v == (1 << 8 * self.o) - 1 else v

    def read(self, address: int, n: int) -> bytes:
        if address == UNDEFINED:
            raise FormatError("HDF5 structure points at an undefined address")
        return self.region.read(self.base + address, n)

    # object headers ------------------------------------------------------------------------------

    def messages(self, address: int) -> list[tuple[int, bytes]]:
        """(type, body) of every message of the object header at ``address``, continuations followed."""
        head = self.read(address, 16)
        if head[:4] == b"OHDR":
            return self._messages_v2(address)
        if head[0] != 1:
            raise FormatError(f"HDF5 object header version {head[0]} at {address} is not read")
        count = self._uint(head, 2, 2)
        blocks = [(address + 16, self._uint(head, 8, 4))]
        out: list[tuple[int, bytes]] = []
        while blocks:
            start, size = blocks.pop(0)
            buf = self.read(start, size)
            pos = 0
            while pos + 8 <= len(buf) and len(out) < count:
                kind, length = self._uint(buf, pos, 2), self._uint(buf, pos + 2, 2)
                body = buf[pos + 8:pos + 8 + length]
                if len(body) != length:
                    raise FormatError("HDF5 header message runs past its block")
                out.append((kind, body))
                if kind == MSG_CONTINUATION:
                    blocks.append((self._addr(body, 0), self._uint(body, self.o, self.l)))
                pos += 8 + length
                if len(out) > MAX_HEADER_MESSAGES:
                    raise FormatError("HDF5 object header has too many messages")
        return out

    def _messages_v2(self, address: int) -> list[tuple[int, bytes]]:
        head = self.read(address, 6)
        flags = head[5]
        pos = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 3)
        size = self._uint(self.read(address + pos, width), 0, width)
        blocks = [(address + pos + width, size, False)]
        out: list[tuple[int, bytes]] = []
        while blocks:
            start, size, signed = blocks.pop(0)
            buf = self.read(start, size)
            pos = 0
            if signed:
                if buf[:4] != b"OCHK":
                    raise FormatError("HDF5 continuation block has no OCHK signature")
                pos, buf = 4, buf[:-4]  # drop the checksum
            while pos + 4 <= len(buf):
                kind, length = buf[pos], self._uint(buf, pos + 1, 2)
                pos += 4 + (2 if flags & 0x04 else 0)
                body = buf[pos:pos + length]
                if len(body) != length:
                    break  # the gap at the end of a block
                out.append((kind, body))
                if kind == MSG_CONTINUATION:
                    blocks.append((self._addr(body, 0), self._uint(body, self.o, self.l), True))
                pos += length
                if len(out) > MAX_HEADER_MESSAGES:
                    raise FormatError("HDF5 object header has too many messages")
        return out

    # groups ----------------------------------------------------------------------------------------

    def children(self, messages: list[tuple[int, bytes]]) -> list[int]:
        """Object header addresses of a group's members (empty for a dataset)."""
        out: list[int] = []
        for kind, body in messages:
            if kind == MSG_SYMBOL_TABLE:
                out += self._btree_children(self._addr(body, 0))
            elif kind == MSG_LINK:
                target = self._hard_link(body)
                if target is not None:
                    out.append(target)
            elif kind == MSG_LINK_INFO:
                flags = body[1] if len(body) > 1 else 0
                heap = self._addr(body, 2 + (8 if flags & 1 else 0))
                if heap != UNDEFINED:
                    raise FormatError("HDF5 dense link storage (fractal heap) is not read")
        return out

    def _btree_children(self, address: int) -> list[int]:
        out, nodes, seen = [], [address], set()
        entry = self.l + self.o + 24
        while nodes:
            node = nodes.pop()
            if node in seen or len(seen) > MAX_ENTRIES:
                raise FormatError("HDF5 group B-tree loops or is too large")
            seen.add(node)
            head = self.read(node, 8 + 2 * self.o)
            if head[:4] != b"TREE" or head[4] != 0:
                raise FormatError("HDF5 group B-tree node is damaged")
            level, used = head[5], self._uint(head, 6, 2)
            body = self.read(node + 8 + 2 * self.o, (used + 1) * self.l + used * self.o)
            kids = [self._addr(body, self.l + i * (self.l + self.o)) for i in range(used)]
            if level > 0:
                nodes += kids
                continue
            for snod in kids:
                sh = self.read(snod, 8)
                if sh[:4] != b"SNOD":
                    raise FormatError("HDF5 symbol table node is damaged")
                n = self._uint(sh, 6, 2)
                table = self.read(snod + 8, n * entry)
                # a soft link's entry has no object header (undefined address): nothing to read there
                out += [a for a in (self._addr(table, i * entry + self.l) for i in range(n)) if a != UNDEFINED]
                if len(out) > MAX_ENTRIES:
                    raise FormatError(f"HDF5 group has more than {MAX_ENTRIES} members")
        return out

    def _hard_link(self, body: bytes) -> int | None:
        if len(body) < 2 or body[0] != 1:
            raise FormatError("HDF5 link message is damaged")
        flags, pos = body[1], 2
        link_type = 0
        if flags & 0x08:
            link_type, pos = body[pos], pos + 1
        pos += (8 if flags & 0x04 else 0) + (1 if flags & 0x10 else 0)
        width = 1 << (flags & 3)
        pos += width + self._uint(body, pos, width)
        return self._addr(body, pos) if link_type == 0 else None  # soft and external links hold no data here

    # datasets ----------------------------------------------------------------------------------------

    def contiguous(self, messages: list[tuple[int, bytes]]) -> tuple[int, int] | None:
        """(offset in the region, size) of a contiguous dataset's data, or None."""
        for kind, body in messages:
            if kind == MSG_LAYOUT and len(body) >= 2 and body[0] in (3, 4) and body[1] == 1:
                address, size = self._addr(body, 2), self._uint(body, 2 + self.o, self.l)
                if address != UNDEFINED:
                    return self.base + address, size
        return None


def hdf5_boundaries(region: Region) -> list[int]:
    """The start and end of every contiguous dataset of at least MIN_TENSOR bytes."""
    h5 = _H5(region)
    out: list[int] = []
    seen: set[int] = set()
    todo = [h5.root]
    while todo:
        address = todo.pop()
        if address in seen:
            continue
        seen.add(address)
        if len(seen) > MAX_ENTRIES:
            raise FormatError(f"HDF5 file has more than {MAX_ENTRIES} objects")
        messages = h5.messages(address)
        data = h5.contiguous(messages)
        if data is not None:
            offset, length = data
            _check_tensor(region, offset, length, f"HDF5 dataset at {address}")
            if length >= MIN_TENSOR:
                out += [offset, offset + length]
        else:
            todo += h5.children(messages)
    return out


# -- TensorFlow checkpoint shards (SavedModel variables) -------------------------------------------

TABLE_MAGIC = 0xDB4775248B80FB57
MAX_INDEX_BYTES = MAX_METADATA_READ


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise FormatError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _block(index: bytes, handle: bytes, pos: int = 0) -> tuple[bytes, int]:
    offset, pos = _varint(handle, pos)
    size, pos = _varint(handle, pos)
    if offset + size + 5 > len(index):
        raise FormatError("table block lies past the end of the .index file")
    if index[offset + size] != 0:
        raise FormatError("compressed table blocks are not parsed")
    return index[offset:offset + size], pos


def _block_entries(block: bytes, limit: list[int]):
    """Yield (key, value) of one LevelDB table block (prefix-compressed keys)."""
    if len(block) < 4:
        raise FormatError("table block is too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    if n_restarts > len(block) or end < 0:
        raise FormatError("table block's restart array is damaged")
    pos, key = 0, b""
    while pos < end:
        limit[0] -= 1
        if limit[0] < 0:
            raise FormatError(f".index holds more than {MAX_ENTRIES} records")
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + vlen > end:
            raise FormatError("table entry is damaged")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + vlen]
        pos += vlen


def _bundle_entry(value: bytes) -> tuple[int, int, int]:
    """(shard_id, offset, size) of a BundleEntryProto (fields 3, 4 and 5)."""
    fields = {3: 0, 4: 0, 5: 0}
    pos = 0
    while pos < len(value):
        tag, pos = _varint(value, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            v, pos = _varint(value, pos)
            if number in fields:
                fields[number] = v
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n, pos = _varint(value, pos)
            pos += n
        elif wire == 5:
            pos += 4
        else:
            raise FormatError(f"BundleEntryProto has wire type {wire}")
        if pos > len(value):
            raise FormatError("BundleEntryProto is truncated")
    return fields[3], fields[4], fields[5]


def checkpoint_boundaries(index_path: str, shard: int, region: Region) -> list[int]:
    """Start and end in data shard ``shard`` of every tensor of at least MIN_TENSOR bytes, from ``index_path``."""
    with open(index_path, "rb") as f:
        index = f.read(MAX_INDEX_BYTES + 1)
    if len(index) > MAX_INDEX_BYTES or len(index) < 48:
        raise FormatError(f"{index_path!r} is too short or over {MAX_INDEX_BYTES} bytes")
    footer = index[-48:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise FormatError(f"{index_path!r} is not a TensorFlow checkpoint index (bad table magic)")
    _meta, pos = _block(index, footer)  # metaindex handle first, then the index block's
    top, _ = _block(index, footer, pos)
    limit = [MAX_ENTRIES]
    out = []
    for _key, handle in _block_entries(top, limit):
        data, _ = _block(index, handle)
        for key, value in _block_entries(data, limit):
            if not key:
                continue  # the BundleHeaderProto
            shard_id, offset, size = _bundle_entry(value)
            if shard_id != shard:
                continue
            _check_tensor(region, offset, size, f"checkpoint tensor {key!r}")
            if size >= MIN_TENSOR:
                out += [offset, offset + size]
    return out


PARSERS: dict[str, Callable[[Region], list[int]]] = {
    "zip": zip_boundaries,
    "hdf5": hdf5_boundaries,
    "npy": npy_boundaries,
    "safetensors": safetensors_boundaries,
    "gguf": gguf_boundaries,
    "tflite": tflite_boundaries,
}
