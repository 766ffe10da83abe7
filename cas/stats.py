"""Dedup and compression statistics: pure functions over manifests and stored object sizes.

Terms, used the same way in the CLI, the JSON output and the README:
- logical bytes: what the versions hold, counting every copy (sum of file sizes);
- unique bytes: raw bytes of distinct chunks (what is left after dedup);
- stored bytes: what those distinct chunk objects take in the store (after compression, headers included);
- dedup ratio = logical / unique; compression ratio = unique / stored;
- a version's new bytes: chunks it was first to bring (in creation order), raw and stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .manifest import Manifest


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def model_stats(model: str, manifests: Iterable[Manifest], stored_size: Callable[[bytes], int | None]) -> dict:
    """Statistics for one model; ``stored_size(digest)`` is None for a chunk the store lacks."""
    seen: set[bytes] = set()
    versions = []
    logical = unique = stored = missing = 0
    for m in sorted(manifests, key=lambda m: m.created):
        new_raw = new_stored = new_chunks = 0
        for d, length in m.chunk_lengths().items():
            if d in seen:
                continue
            seen.add(d)
            size = stored_size(d)
            new_chunks += 1
            new_raw += length
            if size is None:
                missing += 1
            else:
                new_stored += size
        logical += m.size
        unique += new_raw
        stored += new_stored
        versions.append({
            "version": m.version,
            "created": m.created,
            "files": len(m.files),
            "logical_bytes": m.size,
            "chunks": sum(len(f.digests) for f in m.files),
            "new_chunks": new_chunks,
            "new_raw_bytes": new_raw,
            "new_stored_bytes": new_stored,
        })
    return {
        "model": model,
        "versions": versions,
        "logical_bytes": logical,
        "unique_bytes": unique,
        "stored_bytes": stored,
        "dedup_ratio": _ratio(logical, unique),
        "compression_ratio": _ratio(unique, stored),
        "missing_chunks": missing,
    }


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
