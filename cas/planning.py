"""The one chunk-planning path: which (offset, length) pieces of which files a put stores.

``plan`` is the only caller of a chunker (cas.chunking) and of the format parsers (cas.formats).
put, repair, the dedup tool and the benchmarks all cut files through it, so a dedup prediction
is, to the byte, what a put with the same chunker stores.

Planning ``fixed`` and ``auto`` reads no file data: ``auto`` reads each file's metadata (zip
directory, HDF5 object headers, safetensors header, checkpoint index) once. ``cdc`` must read the
bytes to find its cut points; its pieces are produced lazily, so hashing (which reads them again,
from the page cache) runs in the worker threads while the main thread cuts the next ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .chunking import MIN_TENSOR, Chunker, aligned_chunks, cdc_file_chunks, cdc_limits, fixed_chunks
from .formats import FormatError, boundaries
from .localfs import SourceFile
from .transfer import Piece

log = logging.getLogger("cas.planning")
# cdc cuts a large file in this many segments at once: one per core the process may use, at most 4
CDC_THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@dataclass
class FilePlan:
    """One file's pieces, in order, and the chunker record the manifest keeps for it."""

    source: SourceFile
    chunker: dict
    pieces: list[tuple[int, int]] = field(default_factory=list)


class Plan:
    """The pieces of a set of files, planned with one Chunker.

    Iterating yields every piece (files in order, each file's pieces in order) and fills in each
    ``FilePlan.pieces`` and ``produced`` (every Piece, in order) as it goes; iterate once, then
    ``group`` the digests by file.
    """

    def __init__(self, sources: Sequence[SourceFile], chunker: Chunker, known: dict | None = None) -> None:
        self.chunker = chunker
        self.files = [FilePlan(s, {}) for s in sources]
        self.known = known or {}
        self.produced: list[Piece] = []
        self._done = False

    def __iter__(self) -> Iterator[Piece]:
        if self._done:
            raise RuntimeError("a Plan is iterated once")
        self._done = True
        for fp in self.files:
            entry = self.known.get(fp.source.rel_path)
            if entry is not None and entry.size == fp.source.size:
                fp.chunker, cuts = entry.chunker or {}, ((o, n) for o, n, _d in entry.chunks())
            else:
                fp.chunker, cuts = _cut(fp.source, self.chunker)
            for offset, length in cuts:
                fp.pieces.append((offset, length))
                piece = Piece(fp.source, offset, length)
                self.produced.append(piece)
                yield piece

    def pieces(self) -> list[Piece]:
        return list(self)

    def group(self, values: Sequence) -> list[tuple[FilePlan, list]]:
        """Split per-piece ``values`` (digests, in piece order) into (file plan, its values) per file."""
        out, start = [], 0
        for fp in self.files:
            out.append((fp, list(values[start:start + len(fp.pieces)])))
            start += len(fp.pieces)
        if start != len(values):
            raise ValueError(f"{len(values)} values for {start} planned pieces")
        return out


def plan(sources: Sequence[SourceFile], chunker: Chunker) -> Plan:
    """Plan the pieces of ``sources`` with ``chunker`` (see Plan)."""
    return Plan(sources, chunker)


def replan(sources: Sequence[SourceFile], manifest) -> Plan:
    """Plan a local copy of a stored version the way that version was cut (for repair).

    A file the manifest lists with the same size gets the manifest's own pieces, whatever chunker
    cut them (so a copy on a machine without h5py still lines up with an ``auto`` put); any other
    file is cut with the chunker the version recorded (fixed at its chunk size for old manifests).
    """
    known = {f.path: f for f in manifest.files}
    if manifest.kind == "file" and len(sources) == 1 and len(manifest.files) == 1:
        known = {sources[0].rel_path: manifest.files[0]}
    return Plan(sources, _recorded_chunker(manifest), known)


def _recorded_chunker(manifest) -> Chunker:
    record = next((f.chunker for f in manifest.files if f.chunker), None) or {}
    try:
        if record.get("name") == "cdc":
            return Chunker("cdc", record["avg"])
        return Chunker(record.get("name", "fixed"), record.get("chunk_size", manifest.chunk_size))
    except (KeyError, TypeError, ValueError):
        return Chunker("fixed", manifest.chunk_size)


def _cut(source: SourceFile, chunker: Chunker) -> tuple[dict, Iterator[tuple[int, int]]]:
    size = source.size
    if chunker.name == "fixed":
        return chunker.fixed_record(), fixed_chunks(size, chunker.chunk_size)
    if chunker.name == "cdc":
        low, avg, high = cdc_limits(chunker.chunk_size)
        record = {"name": "cdc", "algorithm": "fastcdc2020", "avg": avg, "min": low, "max": high}
        return record, _checked(cdc_file_chunks(source.local_path, avg, threads=CDC_THREADS), source)
    try:
        found = boundaries(source.local_path)
    except (FormatError, OSError) as exc:
        log.info("%s: cut fixed (%s)", source.rel_path, exc)
        return chunker.fixed_record(), fixed_chunks(size, chunker.chunk_size)
    if found is None:
        log.info("%s: no format cas parses, cut fixed", source.rel_path)
        return chunker.fixed_record(), fixed_chunks(size, chunker.chunk_size)
    kind, cuts = found
    log.info("%s: %s, %d boundaries", source.rel_path, kind, len(set(cuts)))
    record = {"name": "auto", "format": kind, "chunk_size": chunker.chunk_size, "min_tensor": MIN_TENSOR}
    return record, aligned_chunks(size, cuts, chunker.chunk_size)


def _checked(cuts: Iterator[tuple[int, int]], source: SourceFile) -> Iterator[tuple[int, int]]:
    """Content-defined pieces must cover the size the scan saw: a file that grows or shrinks meanwhile
    would otherwise be stored with a size its manifest does not claim."""
    from .errors import SourceChanged

    end = 0
    for offset, length in cuts:
        end = offset + length
        if end > source.size:
            break
        yield offset, length
    if end != source.size:
        raise SourceChanged(f"{source.local_path!r} changed size while being stored; nothing was published, "
                            "run the put again")
