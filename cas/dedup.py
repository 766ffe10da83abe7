"""What would storing these versions cost, and what do stored versions share: dedup analysis.

The core is pure: ``analyze`` takes versions as manifests (ordered chunk digests and lengths per
file) and a ``stored_size(digest, raw_length)`` function, and returns plain dicts that a table,
``--json`` or a chart can show. Two edges feed it: ``analyze_local`` chunks and hashes local files
through cas.transfer (in parallel) and compresses the unique chunks with cas.codec, all of them or
a sample; ``analyze_store`` reads manifests and stored object sizes from a store, and
``store_stats`` (``cas stats``) runs the same analysis over every model of a store.

Local versions are cut by cas.planning, the path put takes, so a prediction for a chunker is
what a put with that chunker stores, to the byte.

Terms, used the same way in ``cas stats``, the dedup tool, the JSON output and the README:

- logical bytes: what the versions hold, counting every copy (sum of file sizes);
- unique bytes: raw bytes of distinct chunks (what is left after dedup);
- stored bytes: what those distinct chunk objects take in the store (after compression, headers included),
  counting each pack (cas.packing) whole: a small chunk a put packs again (it was in no version the
  put read for reuse) is stored bytes again, though not unique bytes again;
- dedup ratio = logical / unique; compression ratio = unique / stored;
- a version's *new* bytes: chunks it was first to bring (in the order given: creation order for a store);
- objects: chunk objects of their own plus packs; objects per 100 MB: objects per 100 MB (10^8 bytes)
  of stored bytes (each object costs NameNode heap on HDFS);

- each chunk occurrence of a version is **new** (no earlier version and no earlier place in this
  version holds it), **shared** (an earlier version holds it) or **repeated** (only an earlier place
  in this same version holds it). Per version and per file, new + shared + repeated = logical bytes;
- a **region** is a maximal run of consecutive chunks of one file with the same status;
- the **shared matrix** cell [i][j] is the raw bytes of the distinct chunks that versions i and j
  both reference. It is symmetric; the diagonal is a version's distinct bytes (its logical size
  unless it repeats chunks);
- a version's **exclusive** bytes are its chunks no other analysed version references (what
  removing it would free, unless another model shares them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from . import codec
from .chunking import DEFAULT_CHUNKER, Chunker, describe
from .digest import HASH_NAME
from .digest import digest as digest_of
from .errors import NoSuchModel, NoSuchVersion, SourceChanged
from .layout import CHUNKS, PACKS, digest_of_chunk_key, id_of_pack_key
from .localfs import scan_source
from .maintenance import chunk_codecs
from .manifest import FileEntry, Manifest, pack
from .names import Ref, check_name
from .packing import DEFAULT_PACK_BELOW, REUSE_VERSIONS, Packing, simulate
from .planning import plan
from .progress import byte_bar
from .sizes import human_bytes
from .transfer import Piece, hash_pieces, read_piece, run_bounded

NEW = "new"
SHARED = "shared"
REPEATED = "repeated"

# stored_size(digest, raw_length): bytes the chunk object takes (or would take) in a store;
# None when a store lacks the chunk.
StoredSize = Callable[[bytes, int], "int | None"]
# pack_size(pack id): bytes a pack object takes; None when a store lacks it
PackSize = Callable[[bytes], "int | None"]

LOCAL_MODEL = "local"  # model name recorded in the manifests built for local versions


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def objects_per_100mb(objects: int, stored_bytes: int) -> float | None:
    return round(objects * 1e8 / stored_bytes, 1) if stored_bytes else None


def version_chunkers(m: Manifest) -> str:
    """The chunkers that cut a version's files, as short labels ("auto/hdf5 4 MiB", "fixed 4 MiB")."""
    return ", ".join(sorted({describe(f.chunker, m.chunk_size) for f in m.files})) or describe(None, m.chunk_size)


# -- the pure core ------------------------------------------------------------------------------


def analyze(versions: Sequence[Manifest], stored_size: StoredSize, pack_size: PackSize | None = None) -> dict:
    """Dedup figures, file and region detail, and the shared matrix for ``versions`` in the order given.

    The order matters: a version's new bytes are those no earlier version holds. Stored bytes and
    objects follow where each version's chunks live (``Manifest.packed``): a version brings the
    objects of its own no earlier version referenced and the packs no earlier version read from
    (``pack_size``: a pack's bytes; without it, the sum of its chunks this version places).
    """
    labels = [m.version for m in versions]
    if len(set(labels)) != len(labels):
        raise ValueError(f"version labels must be distinct, got {labels}")
    first_seen: dict[bytes, int] = {}  # digest -> index of the version that brought it
    stored: dict[bytes, int | None] = {}
    lengths: dict[bytes, int] = {}
    whole_files: dict[tuple[bytes, ...], str] = {}  # chunk list of a file seen before -> "version:path"
    by_path: dict[str, dict] = {}
    missing = 0
    own_objects: set[bytes] = set()  # digests with an object of their own, as versions brought them
    packs_seen: set[bytes] = set()
    # packs the store lacks: their chunks count as the objects of their own a repair writes, or missing
    packs_gone: set[bytes] = set()
    out_versions = []
    for vi, m in enumerate(versions):
        new_packs = m.pack_ids() - packs_seen
        packs_seen |= new_packs
        pack_bytes = {p: pack_size(p) for p in new_packs} if pack_size else {}
        packs_gone |= {p for p, n in pack_bytes.items() if n is None}
        new_packs -= packs_gone
        packed = {d: at for d, at in m.packed.items() if at.pack not in packs_gone}
        packed_bytes = {p: 0 for p in new_packs}  # this version's chunks in each new pack
        for at in packed.values():
            if at.pack in packed_bytes:
                packed_bytes[at.pack] += at.length
        row = {"version": m.version, "created": m.created, "chunk_size": m.chunk_size, "chunker": version_chunkers(m),
               "files": len(m.files),
               "logical_bytes": m.size, "manifest_bytes": len(pack(m)), "chunks": 0, "distinct_chunks": 0,
               "distinct_raw_bytes": 0, "new_chunks": 0, "new_raw_bytes": 0, "new_stored_bytes": 0,
               "shared_raw_bytes": 0, "repeated_raw_bytes": 0, "new_objects": 0, "new_packs": len(new_packs)}
        file_rows = []
        placed_here: set[bytes] = set()
        for f in m.files:
            fr, new_digests = _file_report(f, vi, first_seen, labels)
            for d, n in zip(f.digests, f.lengths):
                lengths.setdefault(d, n)
            fr["new_stored_bytes"] = 0
            for d in new_digests:
                at = packed.get(d)
                stored[d] = at.length if at is not None else stored_size(d, lengths[d])
            for d in dict.fromkeys(f.digests):
                at = packed.get(d)
                if at is None and d not in own_objects:
                    own_objects.add(d)
                    row["new_objects"] += 1
                    size = stored_size(d, lengths[d])
                    if size is None:
                        missing += 1
                    else:
                        fr["new_stored_bytes"] += size
                elif at is not None and at.pack in new_packs and d not in placed_here:
                    placed_here.add(d)  # its share of a pack this version brought
                    fr["new_stored_bytes"] += at.length
            key = tuple(f.digests)
            fr["same_as"] = whole_files.get(key) if f.size else None
            if f.size:
                whole_files.setdefault(key, f"{m.version}:{f.path}")
            row["chunks"] += len(f.digests)
            row["new_chunks"] += len(new_digests)
            for status in (NEW, SHARED, REPEATED):
                row[f"{status}_raw_bytes"] += fr[f"{status}_raw_bytes"]
            row["new_stored_bytes"] += fr["new_stored_bytes"]
            file_rows.append(fr)
            p = by_path.setdefault(f.path, {"path": f.path, "versions": 0, "logical_bytes": 0, "new_raw_bytes": 0,
                                            "new_stored_bytes": 0})
            p["versions"] += 1
            p["logical_bytes"] += f.size
            p["new_raw_bytes"] += fr["new_raw_bytes"]
            p["new_stored_bytes"] += fr["new_stored_bytes"]
        for p in new_packs:  # a pack's bytes beyond this version's chunks (another writer's) count too
            row["new_stored_bytes"] += pack_bytes.get(p, packed_bytes[p]) - packed_bytes[p]
        row["new_objects"] += len(new_packs)
        distinct = m.chunk_lengths()
        row["distinct_chunks"] = len(distinct)
        row["distinct_raw_bytes"] = sum(distinct.values())
        for fr in file_rows:
            fr["regions"] = fr.pop("regions")  # keep the long list last in JSON
        row["file_detail"] = file_rows
        out_versions.append(row)

    matrix, exclusive_raw, exclusive_stored, referenced_stored = _sharing(versions, lengths, stored)
    for vi, row in enumerate(out_versions):
        row["exclusive_raw_bytes"] = exclusive_raw[vi]
        row["exclusive_stored_bytes"] = exclusive_stored[vi]
        row["referenced_stored_bytes"] = referenced_stored[vi]
        row["shared_stored_bytes"] = referenced_stored[vi] - exclusive_stored[vi]
        row["file_detail"] = row.pop("file_detail")  # keep the long list last in JSON

    logical = sum(r["logical_bytes"] for r in out_versions)
    unique = sum(r["new_raw_bytes"] for r in out_versions)
    stored_total = sum(r["new_stored_bytes"] for r in out_versions)
    objects = sum(r["new_objects"] for r in out_versions)
    return {
        "versions_analysed": len(versions),
        "chunk_sizes": sorted({m.chunk_size for m in versions}),
        "logical_bytes": logical,
        "unique_bytes": unique,
        "unique_chunks": len(first_seen),
        "stored_bytes": stored_total,
        "objects": objects,
        "packs": len(packs_seen - packs_gone),
        "objects_per_100mb": objects_per_100mb(objects, stored_total),
        "manifest_bytes": sum(r["manifest_bytes"] for r in out_versions),
        "dedup_ratio": _ratio(logical, unique),
        "compression_ratio": _ratio(unique, stored_total),
        "missing_chunks": missing,
        "versions": out_versions,
        "shared_raw_bytes": {"versions": labels, "matrix": matrix},
        "files": sorted(by_path.values(), key=lambda p: (-p["new_stored_bytes"], p["path"])),
    }


def _file_report(f: FileEntry, vi: int, first_seen: dict[bytes, int], labels: list[str]) -> tuple[dict, list[bytes]]:
    """Classify every chunk of one file and coalesce runs into regions; updates ``first_seen``."""
    counts = {NEW: 0, SHARED: 0, REPEATED: 0}
    regions: list[dict] = []
    sources: list[set[int]] = []  # per region: versions that first brought its shared chunks
    new_digests: list[bytes] = []
    for offset, length, d in f.chunks():
        seen = first_seen.get(d)
        if seen is None:
            status = NEW
            first_seen[d] = vi
            new_digests.append(d)
        elif seen < vi:
            status = SHARED
        else:
            status = REPEATED
        counts[status] += length
        if regions and regions[-1]["status"] == status:
            regions[-1]["length"] += length
            regions[-1]["chunks"] += 1
        else:
            regions.append({"offset": offset, "length": length, "status": status, "chunks": 1})
            sources.append(set())
        if status == SHARED:
            sources[-1].add(seen)
    for region, src in zip(regions, sources):
        if region["status"] == SHARED:
            region["first_seen_in"] = [labels[i] for i in sorted(src)]
    report = {"path": f.path, "size": f.size, "chunks": len(f.digests)}
    report.update({f"{s}_raw_bytes": n for s, n in counts.items()})
    report["regions"] = regions
    return report, new_digests


def _sharing(versions: Sequence[Manifest], lengths: dict[bytes, int], stored: dict[bytes, int | None]):
    """Shared matrix and per-version exclusive/referenced bytes.

    Chunks are grouped by the set of versions that reference them (few distinct sets in practice),
    so the cost is one pass over the chunks plus the groups times their size squared.
    """
    n = len(versions)
    holders: dict[bytes, int] = {}  # digest -> bit mask of versions referencing it
    for vi, m in enumerate(versions):
        bit = 1 << vi
        for d in m.chunk_lengths():
            holders[d] = holders.get(d, 0) | bit
    groups: dict[int, list[int]] = {}  # mask -> [raw bytes, stored bytes]
    for d, mask in holders.items():
        g = groups.setdefault(mask, [0, 0])
        g[0] += lengths[d]
        g[1] += stored.get(d) or 0
    matrix = [[0] * n for _ in range(n)]
    exclusive_raw, exclusive_stored, referenced_stored = [0] * n, [0] * n, [0] * n
    for mask, (raw, stored_bytes) in groups.items():
        members = [i for i in range(n) if mask >> i & 1]
        for i in members:
            referenced_stored[i] += stored_bytes
            for j in members:
                matrix[i][j] += raw
        if len(members) == 1:
            exclusive_raw[members[0]] += raw
            exclusive_stored[members[0]] += stored_bytes
    return matrix, exclusive_raw, exclusive_stored, referenced_stored


def largest_regions(report: dict, *, status: str = NEW, top: int = 10, skip_first: bool = True) -> list[dict]:
    """The ``top`` longest regions of ``status`` across versions, longest first, each with version and path.

    ``skip_first``: leave out the first version, where every region is new.
    """
    found = []
    for row in report["versions"][1 if skip_first else 0:]:
        for f in row["file_detail"]:
            for r in f["regions"]:
                if r["status"] == status:
                    found.append({"version": row["version"], "path": f["path"], **r})
    found.sort(key=lambda r: (-r["length"], r["version"], r["path"], r["offset"]))
    return found[:top]


# -- compression: every unique chunk, or a sample ----------------------------------------------


def in_sample(digest: bytes, fraction: float) -> bool:
    """Whether a chunk belongs to a ``fraction`` sample: decided by its digest, so the same chunks
    are chosen on every run and the choice is independent of the chunk's position."""
    return fraction >= 1.0 or int.from_bytes(digest[:8], "big") < fraction * 2**64


def measure_stored(first_piece: dict[bytes, Piece], *, sample: float = 1.0, policy: str = codec.DEFAULT_POLICY,
                   level: int = codec.DEFAULT_LEVEL, min_saving: float = codec.DEFAULT_MIN_SAVING,
                   n_workers: int = 2, progress: bool = False) -> tuple[StoredSize, dict]:
    """Encode unique chunks as a put with codec ``policy`` would (the same ``cas.codec.encode``) and
    return (stored_size function, description).

    With ``sample`` < 1 only that fraction of chunks (at least one) is encoded; the others are
    estimated at the sample's stored/raw ratio. The description says which was done and, in
    ``codecs``, how many of the encoded chunks and bytes each codec took.
    """
    if not 0 < sample <= 1:
        raise ValueError(f"sample must be a fraction in (0, 1], got {sample!r}")
    codec.check_level(level)
    codec.check_policy(policy)
    chosen = [(d, p) for d, p in first_piece.items() if in_sample(d, sample)]
    if not chosen and first_piece:
        chosen = [next(iter(first_piece.items()))]
    total = sum(p.length for _, p in chosen)

    with byte_bar("compress", total, progress) as bar:
        def one(item: tuple[bytes, Piece]) -> tuple[str, int, int]:
            expected, piece = item
            raw = read_piece(piece.source, piece.offset, piece.length)
            if digest_of(raw) != expected:
                raise SourceChanged(f"{piece.source.local_path!r} changed while being analysed "
                                    f"(bytes at offset {piece.offset}); run again once the file is stable")
            obj = codec.encode(raw, policy=policy, level=level, min_saving=min_saving)
            bar(piece.length)
            return codec.CODEC_NAMES[codec.read_header(obj)[0]], piece.length, len(obj)

        encoded = run_bounded(one, chosen, n_workers)
        sizes = {d: size for (d, _), (_, _, size) in zip(chosen, encoded)}
    sampled_raw = sum(p.length for _, p in chosen)
    sampled_stored = sum(sizes.values())
    ratio = sampled_stored / sampled_raw if sampled_raw else 1.0
    estimated = len(chosen) < len(first_piece)

    def stored_size(d: bytes, length: int) -> int:
        size = sizes.get(d)
        return size if size is not None else round(length * ratio)

    info = {
        "source": "estimated from a sample" if estimated else "measured on every unique chunk",
        "estimated": estimated,
        "codec": policy,
        "codecs": codec_stats(encoded),
        "level": level,
        "min_saving": min_saving,
        "sample_fraction": sample,
        "sampled_chunks": len(chosen),
        "sampled_raw_bytes": sampled_raw,
        "sampled_stored_bytes": sampled_stored,
        "unique_chunks": len(first_piece),
        "sample_ratio": _ratio(sampled_raw, sampled_stored),
    }
    return stored_size, info


# -- local versions ------------------------------------------------------------------------------


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def local_labels(paths: Sequence[str]) -> list[str]:
    """Short version labels for local paths: the fewest trailing path components that tell them apart.

    ``runs/v1/model.h5`` and ``runs/v2/model.h5`` become ``v1/model.h5`` and ``v2/model.h5``.
    """
    parts = [os.path.normpath(os.path.abspath(p)).split(os.sep) for p in paths]
    if len({tuple(p) for p in parts}) != len(parts):
        raise ValueError(f"each version must be given once, got {list(paths)}")
    for k in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-k:]) or "/" for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return ["/".join(p) for p in parts]


def chunk_local(sources_by_version: Sequence[tuple[str, str, list, list[str]]], chunker: Chunker, *,
                level: int = codec.DEFAULT_LEVEL, n_workers: int = 2,
                progress: bool = False) -> tuple[list[Manifest], dict[bytes, Piece]]:
    """Cut (cas.planning, as put does) and hash scanned local versions; return their manifests and
    the first piece of every chunk.

    ``sources_by_version``: (label, kind, files, empty_dirs) per version, files as from scan_source.
    """
    planned = plan([s for _, _, files, _ in sources_by_version for s in files], chunker)
    total = sum(s.size for _, _, files, _ in sources_by_version for s in files)
    with byte_bar(f"hash {chunker.name} {human_bytes(chunker.chunk_size)}", total, progress) as bar:
        digests = hash_pieces(planned, n_workers, bar, largest=chunker.max_piece)
    first_piece: dict[bytes, Piece] = {}
    for d, p in zip(digests, planned.produced):
        first_piece.setdefault(d, p)
    grouped = iter(planned.group(digests))
    manifests = []
    for label, kind, files, empty_dirs in sources_by_version:
        entries = []
        for _ in files:
            fp, file_digests = next(grouped)
            entries.append(FileEntry(fp.source.rel_path, fp.source.size, fp.source.mode, tuple(file_digests),
                                     tuple(n for _, n in fp.pieces), chunker=fp.chunker))
        manifests.append(Manifest(model=LOCAL_MODEL, version=label, kind=kind, chunk_size=chunker.max_piece,
                                  level=level, files=tuple(entries), dirs=tuple(empty_dirs), hash=HASH_NAME,
                                  created=0.0))
    return manifests, first_piece


def analyze_local(paths: Sequence[str], chunk_sizes: Sequence[int], *, chunkers: Sequence[str] = (DEFAULT_CHUNKER,),
                  sample: float = 1.0, policy: str = codec.DEFAULT_POLICY, level: int = codec.DEFAULT_LEVEL,
                  min_saving: float = codec.DEFAULT_MIN_SAVING, pack_below: int = DEFAULT_PACK_BELOW,
                  n_workers: int | None = None, progress: bool = False) -> dict:
    """What storing the local files or directories ``paths`` (versions, oldest first) would cost
    with each of ``chunkers`` at each of ``chunk_sizes``: one ``analyze`` report per (chunker,
    chunk size), with how stored bytes were found.

    Puts of the versions in order into an empty store are simulated (cas.packing.simulate): chunks
    below ``pack_below`` bytes go in packs, each version reusing the packs of the ``REUSE_VERSIONS``
    before it (as a put does), so stored bytes and objects are what those puts make."""
    packing = Packing(pack_below=pack_below)
    if not paths:
        raise ValueError("give at least one local file or directory")
    if not chunk_sizes:
        raise ValueError("give at least one chunk size")
    if not chunkers:
        raise ValueError("give at least one chunker")
    cutters = [Chunker(name, size) for name in dict.fromkeys(chunkers) for size in dict.fromkeys(chunk_sizes)]
    n_workers = n_workers or default_workers()
    labels = local_labels(paths)
    scanned = []
    for label, path in zip(labels, paths):
        kind, files, empty_dirs = scan_source(path)
        scanned.append((label, kind, files, empty_dirs))
    reports = []
    for cutter in cutters:
        manifests, first_piece = chunk_local(scanned, cutter, level=level, n_workers=n_workers, progress=progress)
        stored_size, info = measure_stored(first_piece, sample=sample, policy=policy, level=level,
                                           min_saving=min_saving, n_workers=n_workers, progress=progress)
        # pack ids the size of a real one (the hash of the pack's bytes), so manifest bytes come out exact
        manifests, pack_sizes = simulate(manifests, stored_size, packing,
                                         lambda vi, k: digest_of(f"simulated pack {k} of version {vi}".encode()),
                                         REUSE_VERSIONS)
        report = {"chunker": cutter.name, "chunk_size": cutter.chunk_size, "pack_below": pack_below, "stored": info}
        report.update(analyze(manifests, stored_size, pack_sizes.get))
        reports.append(report)
    return {
        "mode": "local",
        "inputs": [{"version": label, "path": os.path.abspath(p), "kind": kind}
                   for (label, kind, _, _), p in zip(scanned, paths)],
        "reports": reports,
    }


# -- a store -------------------------------------------------------------------------------------


def analyze_store(store, model: str, versions: Sequence[str] | None = None) -> dict:
    """What the stored versions of ``model`` share and where its stored bytes go.

    Versions are analysed in creation order (``versions`` restricts them); stored sizes are the
    chunk objects' real sizes, read in one walk of the store.
    """
    check_name(model, "model")
    available = store.versions(model)
    if not available:
        raise NoSuchModel(model, store.backend.url)
    chosen = list(dict.fromkeys(versions)) if versions else available
    unknown = [v for v in chosen if v not in available]
    if unknown:
        raise NoSuchVersion(model, unknown[0])
    manifests = run_bounded(lambda v: store.manifest(Ref(model, version=v)), chosen, store.n_workers)
    manifests.sort(key=lambda m: m.created)
    sizes, stored_size, pack_size = _stored_sizes(store)
    report = {"mode": "store", "store": store.backend.url, "model": model,
              "stored": {"source": "read from the store", "estimated": False,
                         "codecs": codec_stats(chunk_codecs(store, manifests, sizes))}}
    report.update(analyze(manifests, stored_size, pack_size))
    return report


STATS_VERSION_FIELDS = ("version", "created", "chunker", "chunk_size", "files", "logical_bytes", "chunks",
                        "new_chunks", "new_raw_bytes", "new_stored_bytes", "new_objects", "new_packs")
STATS_TOTAL_FIELDS = ("logical_bytes", "unique_bytes", "unique_chunks", "stored_bytes", "objects", "packs",
                      "objects_per_100mb",
                      "dedup_ratio", "compression_ratio", "missing_chunks")


def store_stats(store, model: str | None = None) -> dict:
    """``cas stats``: the ``analyze`` figures of one model or of every model in a store.

    Per model: its totals and, per version (creation order), the scalar figures of ``analyze``
    (chunker, new raw and stored bytes...). The store-wide totals count a chunk two models share
    once. ``tools/dedup_stats.py store`` shows the same analysis with file and region detail.
    """
    models = [check_name(model, "model")] if model else store.models()
    if model and not store.versions(model):
        raise NoSuchModel(model, store.backend.url)
    sizes, stored_size, pack_size = _stored_sizes(store)
    pairs = [(m, v) for m in models for v in store.versions(m)]
    manifests = run_bounded(lambda mv: store.manifest(Ref(mv[0], version=mv[1])), pairs, store.n_workers)
    per_model = []
    for name in models:
        mine = sorted((m for m in manifests if m.model == name), key=lambda m: m.created)
        full = analyze(mine, stored_size, pack_size)
        row = {"model": name, **{k: full[k] for k in STATS_TOTAL_FIELDS}}
        row["versions"] = [{k: v[k] for k in STATS_VERSION_FIELDS} for v in full["versions"]]
        per_model.append(row)
    everything = sorted(manifests, key=lambda m: m.created)
    everything = [replace(m, version=f"{m.model}@{m.version}") for m in everything]
    totals = analyze(everything, stored_size, pack_size)
    report = {"store": store.backend.url, **{k: totals[k] for k in STATS_TOTAL_FIELDS}, "models": per_model}
    report["codecs"] = codec_stats(chunk_codecs(store, manifests, sizes))
    if not model:
        report["all_chunk_objects_bytes"] = sum(sizes.values()) + sum(pack_size.sizes.values())
    return report


class _PackSizes:
    """pack_size for ``analyze``: {pack id: bytes} from one walk of the store's packs."""

    def __init__(self, sizes: dict[bytes, int]) -> None:
        self.sizes = sizes

    def __call__(self, pack_id: bytes) -> int | None:
        return self.sizes.get(pack_id)


def _stored_sizes(store) -> tuple[dict[str, int], StoredSize, _PackSizes]:
    """Object sizes read in one walk of ``chunks/`` and one of ``packs/``: (sizes by hex digest,
    stored_size, pack_size) for ``analyze``."""
    sizes = {digest_of_chunk_key(o.key): o.size for o in store.backend.walk(CHUNKS)}
    packs = {}
    for o in store.backend.walk(PACKS):
        try:
            packs[bytes.fromhex(id_of_pack_key(o.key))] = o.size
        except ValueError:
            continue  # not a pack's name: junk under packs/ is no pack of any version

    def stored_size(d: bytes, _length: int) -> int | None:
        return sizes.get(d.hex())

    return sizes, stored_size, _PackSizes(packs)


def codec_stats(chunks) -> dict:
    """{codec name: {"chunks", "raw_bytes", "stored_bytes"}} over (codec name, raw length, stored size)
    of distinct chunks; names in sorted order."""
    out: dict[str, dict] = {}
    for name, raw, stored in chunks:
        row = out.setdefault(name, {"chunks": 0, "raw_bytes": 0, "stored_bytes": 0})
        row["chunks"] += 1
        row["raw_bytes"] += raw
        row["stored_bytes"] += stored
    return dict(sorted(out.items()))
