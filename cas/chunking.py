"""Chunk boundaries: pure functions from sizes, boundaries or bytes to (offset, length) pieces.

Three chunkers, chosen per put (``Chunker``) and recorded per file in the manifest:

- ``fixed``: pieces of ``chunk_size`` from the start of the file (the original cas layout);
- ``auto`` (the default): fixed-size runs that restart at every boundary a file's format gives
  (the start and the end of every tensor of at least ``MIN_TENSOR`` bytes, zip members; see
  cas.formats), so a tensor's bytes fall into the same pieces wherever it moved to and whatever
  changed around it (a longer config before the weights, metadata that names shifted offsets);
  files whose format cas does not know, or that do not parse, are cut ``fixed``;
- ``cdc``: content-defined pieces (FastCDC 2020, pyfastcdc's Cython build and its default gear
  table), for opaque formats whose bytes shift. Boundaries depend on the bytes and on pyfastcdc,
  which is pinned; tests/test_chunking.py keeps golden cut points so an upgrade that moves them
  fails the tests instead of silently ending dedup against stored versions.

Which pieces a put stores is decided in one place, cas.planning; nothing else calls these.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KIB = 1 << 10
MIB = 1 << 20
DEFAULT_CHUNK_SIZE = 4 * MIB
MIN_CHUNK_SIZE = 64 * KIB
MAX_CHUNK_SIZE = 256 * MIB
MIN_TENSOR = 64 * KIB  # auto: a tensor at least this big gets runs of its own (bench/README.md: the trade-off)
CDC_MIN_AVG = 64 * KIB  # pyfastcdc takes averages up to 4 MiB and maxima up to 16 MiB
CDC_MAX_AVG = 4 * MIB
CHUNKERS = ("auto", "fixed", "cdc")
DEFAULT_CHUNKER = "auto"


def check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(
            f"chunk_size must be an integer number of bytes between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}, "
            f"got {chunk_size!r}"
        )
    return chunk_size


@dataclass(frozen=True)
class Chunker:
    """A chunker and its parameters, as chosen for a put.

    ``chunk_size`` is the piece size for ``fixed`` and ``auto`` and the average size for ``cdc``
    (minimum a quarter of it, maximum four times it).
    """

    name: str = DEFAULT_CHUNKER
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.name not in CHUNKERS:
            raise ValueError(f"chunker must be one of {', '.join(CHUNKERS)}, got {self.name!r}")
        check_chunk_size(self.chunk_size)
        if self.name == "cdc" and not CDC_MIN_AVG <= self.chunk_size <= CDC_MAX_AVG:
            raise ValueError(f"the cdc chunker takes an average chunk size between {CDC_MIN_AVG} and {CDC_MAX_AVG} "
                             f"bytes (64KiB to 4MiB), got {self.chunk_size}")

    @property
    def max_piece(self) -> int:
        """The longest piece this chunker cuts: what the manifest records as its chunk_size."""
        return cdc_limits(self.chunk_size)[2] if self.name == "cdc" else self.chunk_size

    def fixed_record(self) -> dict:
        return {"name": "fixed", "chunk_size": self.chunk_size}


def describe(record: dict | None, chunk_size: int) -> str:
    """A manifest's per-file chunker record as a short label ("auto/hdf5 4.0 MiB", "cdc avg 1.0 MiB").

    ``None`` (a manifest written before chunkers were recorded) was cut fixed at ``chunk_size``.
    """
    if not record:
        return f"fixed {_size(chunk_size)}"
    name = record.get("name", "?")
    if name == "cdc":
        return f"cdc avg {_size(record.get('avg', 0))}"
    if name == "auto":
        return f"auto/{record.get('format', '?')} {_size(record.get('chunk_size', chunk_size))}"
    return f"{name} {_size(record.get('chunk_size', chunk_size))}"


def _size(n: int) -> str:
    for unit, scale in (("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


# -- fixed ---------------------------------------------------------------------------------------

def fixed_chunks(file_size: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) covering ``file_size`` bytes in pieces of ``chunk_size`` (last one shorter)."""
    for offset in range(0, file_size, chunk_size):
        yield offset, min(chunk_size, file_size - offset)


# -- aligned: fixed-size runs restarting at format boundaries --------------------------------------

def aligned_chunks(file_size: int, boundaries: Iterable[int], chunk_size: int) -> Iterator[tuple[int, int]]:
    """Fixed-size runs of ``chunk_size`` that restart at every boundary (offsets inside the file).

    Boundaries outside (0, file_size) are ignored, duplicates merge, order does not matter; with
    none this is ``fixed_chunks``. The pieces cover the file exactly, in order.
    """
    cuts = sorted({b for b in boundaries if 0 < b < file_size})
    start = 0
    for end in cuts + [file_size]:
        for offset in range(start, end, chunk_size):
            yield offset, min(chunk_size, end - offset)
        start = end


# -- content-defined ---------------------------------------------------------------------------------

def cdc_limits(avg: int) -> tuple[int, int, int]:
    """(min, avg, max) piece sizes of the cdc chunker for an average of ``avg`` bytes."""
    return avg // 4, avg, avg * 4


def _fastcdc(avg: int):
    try:
        from pyfastcdc.cy import FastCDC  # the compiled build: the pure-Python fallback is ~100x slower
    except ImportError as exc:
        raise RuntimeError(f"the cdc chunker needs pyfastcdc's compiled extension ({exc}); "
                           "pip install 'pyfastcdc==0.3.1' on a platform with its wheels") from None
    low, avg, high = cdc_limits(avg)
    return FastCDC(avg, min_size=low, max_size=high, normalized_chunking=1, seed=0)


def cdc_chunks(data, avg: int) -> Iterator[tuple[int, int]]:
    """Content-defined (offset, length) pieces of ``data`` (bytes, memoryview or mmap).

    FastCDC 2020 with pyfastcdc's default gear table (seed 0), normalized chunking 1, minimum
    avg/4 and maximum 4 x avg. pyfastcdc cuts with the GIL released.
    """
    if len(data) == 0:
        return
    for c in _fastcdc(avg).cut_buf(data):
        yield c.offset, c.length


CDC_WINDOW = 64 * MIB  # cdc maps a file in windows of this size: at least 4 x the largest maximum piece


CDC_PARALLEL_MIN = 256 * MIB  # files at least this big are cut in segments in parallel


def cdc_file_chunks(path: str, avg: int, *, threads: int = 1) -> Iterator[tuple[int, int]]:
    """``cdc_chunks`` of a file's bytes: the same cut points, read through memory-map windows.

    With ``threads`` > 1 a file of at least CDC_PARALLEL_MIN bytes is cut in that many segments
    at once (pyfastcdc releases the GIL). A cut point depends only on the bytes from its piece's
    start, so once the cuts carried over from one segment meet a cut of the next segment's own
    list, both go on identically: the pieces are stitched there. If they never meet (bytes that
    never cut early, such as long runs of zeros), cutting simply continues from the last true cut.
    """
    import os

    with open(path, "rb", buffering=0) as f:
        fd, size = f.fileno(), os.fstat(f.fileno()).st_size
        if threads <= 1 or size < CDC_PARALLEL_MIN:
            yield from _cut_range(fd, size, _fastcdc(avg), 0, size)
            return
        yield from _cut_parallel(fd, size, avg, threads)


def _cut_parallel(fd: int, size: int, avg: int, threads: int) -> Iterator[tuple[int, int]]:
    from concurrent.futures import ThreadPoolExecutor

    sync = 4 * cdc_limits(avg)[2]  # a segment's list runs this far into the next one
    starts = [size * k // threads for k in range(threads)] + [size]
    with ThreadPoolExecutor(threads - 1, thread_name_prefix="cas-cdc") as pool:
        futures = [pool.submit(lambda k: list(_cut_range(fd, size, _fastcdc(avg), starts[k],
                                                         min(size, starts[k + 1] + sync))), k)
                   for k in range(1, threads)]
        lists: dict[int, list] = {}
        where: dict[int, tuple[int, int]] = {}  # piece start -> (segment, index) in that segment's list

        def later(segment: int):
            for k in range(segment + 1, threads):
                if k not in lists:
                    lists[k] = futures[k - 1].result()
                    where.update({o: (k, i) for i, (o, _n) in enumerate(lists[k])})
            return where

        segment, pos = 0, 0
        current = _cut_range(fd, size, _fastcdc(avg), 0, min(size, starts[1] + sync))
        while pos < size:
            switched = False
            for offset, n in current:
                if segment + 1 < threads and offset >= starts[segment + 1]:
                    hit = later(segment).get(offset)
                    if hit is not None and hit[0] > segment:
                        segment, index = hit
                        current = iter(lists[segment][index:])
                        switched = True
                        break
                yield offset, n
                pos = offset + n
            if not switched and pos < size:  # the lists never met: go on from the last true cut
                current = _cut_range(fd, size, _fastcdc(avg), pos, size)


def _cut_range(fd: int, size: int, cutter, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """Pieces from ``start`` (a true cut) until one ends at or past ``stop``, through memory maps of
    CDC_WINDOW bytes at a time.

    Every piece of a window but its unfinished last one is final; the next window starts where
    that one did. No copy, and the resident size stays flat: each window is unmapped before the
    next. (pyfastcdc's ``cut_file`` maps the whole file at once, 959 MiB resident cutting 1 GiB;
    its ``cut_stream`` moves the rest of its buffer after every piece, which made a cdc put 0.66x
    a fixed one.)
    """
    import mmap

    grain = mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # map the cached pages up front: no faults
    while start < stop:
        mapped_at = start - start % grain
        length = min(size - mapped_at, CDC_WINDOW)
        last = mapped_at + length == size
        window = mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ, offset=mapped_at)
        view = memoryview(window)[start - mapped_at:]
        pieces = cutter.cut_buf(view)
        next_start = stop
        try:
            for c in pieces:
                offset, n = start + c.offset, c.length
                del c  # it holds a view of the window, which cannot close while one is alive
                if not last and offset + n == mapped_at + length:
                    next_start = offset  # unfinished: cut again in the next window
                    break
                yield offset, n
                if offset + n >= stop:
                    next_start = stop
                    break
        finally:
            del pieces
            view.release()
            try:
                window.close()
            except BufferError:  # a view still alive (an abandoned generator): unmapped when collected
                pass
        if next_start <= start:
            raise RuntimeError(f"CDC_WINDOW ({CDC_WINDOW}) must exceed the largest cdc piece")
        start = next_start
