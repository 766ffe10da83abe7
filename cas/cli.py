"""The `cas` command line: parse, call the library, print, turn errors into one line and an exit code."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import sys
import time

from . import __version__
from .backends import LocalBackend
from .chunking import CHUNKERS, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNKER, Chunker, check_chunk_size, describe
from .codec import DEFAULT_LEVEL, DEFAULT_POLICY, POLICIES, check_level
from .digest import chunk_hash
from .errors import CasError, NoSuchModel, NoSuchTag
from .manifest import Manifest
from .packing import DEFAULT_PACK_BELOW, Packing
from .sizes import human_bytes, parse_size
from .store import Store, default_store_url

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _checked(parse, check=None):
    """An argparse type: ``parse`` the text, then ``check`` the value with the library's own rule;
    either one's ValueError becomes a usage error (exit 2) naming the option."""
    def convert(text: str):
        try:
            value = parse(text)
            return check(value) if check else value
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _at_least_one(n: int) -> int:
    if n < 1:
        raise ValueError(f"must be at least 1, got {n}")
    return n


def _seconds(value: float) -> float:
    if math.isnan(value) or value < 0:
        raise ValueError(f"must be a number of seconds >= 0, got {value}")
    return value


def _pack_below(value: int) -> int:
    return Packing(pack_below=value).pack_below  # its own limits (at most the pack size)


count_arg = _checked(int, _at_least_one)
chunk_size_arg = _checked(parse_size, check_chunk_size)
level_arg = _checked(int, check_level)
pack_below_arg = _checked(parse_size, _pack_below)
seconds_arg = _checked(float, _seconds)


def parse_meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"metadata must be KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cas", description="Chunked, deduplicating store for ML models (local, HDFS or S3).")
    p.add_argument("--store", metavar="URL", help=f"store path or URL (default: $CAS_STORE or {default_store_url()})")
    p.add_argument("--chunk-hash", dest="expect_chunk_hash", metavar="NAME", default=os.environ.get("CAS_CHUNK_HASH") or None,
                   help="refuse a store whose chunk keys are not NAME (xxh3-128 or blake3-256), and create a new "
                        "store with them (default: $CAS_CHUNK_HASH; unset: use the store's own)")
    p.add_argument("--workers", type=count_arg, metavar="N",
                   help="parallel transfer threads (default: the backend's limit); cas predict's processes are --processes")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say how each file was cut (and why a file was cut fixed); show tracebacks on errors")
    p.add_argument("--version", action="version", version=f"cas {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("init", help="create a store and fix its chunk hash (optional for xxh3-128 stores)")
    c.add_argument("--chunk-hash", choices=["xxh3-128", "blake3-256", "xxh3", "blake3"],
                   help="xxh3-128 (default: fast, for writers who trust each other) or blake3-256 (cryptographic: "
                        "for a store shared by people who do not); default: the global --chunk-hash, else xxh3-128")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("put", help="store a file or directory as a new version")
    c.add_argument("path")
    c.add_argument("model")
    c.add_argument("--version", dest="label", metavar="LABEL", help="explicit version label (default: next number)")
    c.add_argument("--tag", action="append", default=[], metavar="TAG", help="also point TAG at the new version")
    c.add_argument("--no-latest", action="store_true", help="do not move the 'latest' tag")
    c.add_argument("--chunk-size", type=chunk_size_arg, default=DEFAULT_CHUNK_SIZE, metavar="SIZE",
                   help="chunk size, e.g. 4MiB (default 4MiB); with --chunker cdc the average size (64KiB to 4MiB)")
    c.add_argument("--chunker", choices=CHUNKERS, default=DEFAULT_CHUNKER,
                   help="where chunks start: auto (default) restarts chunk-size runs at the tensors and members of "
                        "files cas parses (.h5, .keras and other zips, safetensors, GGUF, ONNX, TFLite, .npy, SavedModel "
                        "variables) and "
                        "cuts other files fixed; fixed cuts every file in chunk-size pieces; cdc cuts content-defined "
                        "pieces (FastCDC) for opaque formats whose bytes shift. -v says how each file was cut")
    c.add_argument("--level", type=level_arg, default=DEFAULT_LEVEL, help=f"zstd level 1-22 (default {DEFAULT_LEVEL})")
    c.add_argument("--codec", choices=POLICIES, default=DEFAULT_POLICY,
                   help="how new chunks are stored: auto (byte planes where they beat zstd, as on float weights; "
                        f"zstd otherwise), zstd or raw (default {DEFAULT_POLICY})")
    c.add_argument("--meta", type=parse_meta, action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--strong", choices=["sha256", "blake3"], help="record a strong per-file digest, checked on every get")
    c.add_argument("--pack-below", type=pack_below_arg, default=DEFAULT_PACK_BELOW, metavar="SIZE",
                   help="write new chunks shorter than this together into pack objects of at most 16 MiB "
                        "(default 1MiB: far fewer files on HDFS); 0 stores one object per chunk")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("get", help="fetch a version into a local path")
    c.add_argument("ref", help="MODEL, MODEL@VERSION or MODEL:TAG")
    c.add_argument("path")
    c.add_argument("--force", action="store_true", help="replace the destination if it exists")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("copy", help="copy a version, with the chunks it lacks, to another store")
    c.add_argument("ref", help="MODEL, MODEL@VERSION or MODEL:TAG")
    c.add_argument("--to", required=True, metavar="URL", help="the destination store (path or URL)")
    c.add_argument("--tag", action="append", default=[], metavar="TAG", help="point TAG at the version there")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("ls", help="list models, or the versions and tags of one model")
    c.add_argument("model", nargs="?")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("show", help="show a version's manifest")
    c.add_argument("ref")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("tag", help="point a tag at a version")
    c.add_argument("ref")
    c.add_argument("tag")

    c = sub.add_parser("untag", help="remove a tag")
    c.add_argument("model")
    c.add_argument("tag")

    c = sub.add_parser("rollback", help="move a tag back to its previous target")
    c.add_argument("model")
    c.add_argument("tag", nargs="?", default="latest")

    c = sub.add_parser("history", help="show every move of a tag")
    c.add_argument("model")
    c.add_argument("tag", nargs="?", default="latest")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("rm", help="remove a version (its chunks stay until gc)")
    c.add_argument("ref", help="MODEL@VERSION")
    c.add_argument("--force", action="store_true", help="also remove tags other than latest that point at it")

    c = sub.add_parser("verify", help="check that every chunk a version needs is there (and intact, with --full)")
    c.add_argument("ref", nargs="?", help="one version (default: every version)")
    c.add_argument("--full", action="store_true", help="read and decode every chunk, not just check it exists")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("repair", help="restore a version's damaged or missing chunks from a local copy")
    c.add_argument("ref")
    c.add_argument("path", help="a local copy of that version (file or directory)")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("gc", help="delete chunks and packs no version references (safe while others put)")
    c.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    c.add_argument("--grace", type=seconds_arg, metavar="SECONDS",
                   help="keep unreferenced chunks younger than this (default: the lease TTL, 60 s); 0 is safe only "
                        "when no writer can have been paused")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("stats", help="dedup and compression statistics")
    c.add_argument("model", nargs="?")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("predict", help="run a stored TensorFlow model on a .npy array in worker processes")
    c.add_argument("ref")
    c.add_argument("input", metavar="INPUT.npy")
    c.add_argument("-o", "--output", required=True, metavar="OUT.npy")
    c.add_argument("--processes", type=count_arg, default=2, metavar="N",
                   help="worker processes, each loading the model once (default 2)")
    c.add_argument("--workers", dest="misplaced_workers", type=int, help=argparse.SUPPRESS)
    c.add_argument("--batch-size", type=count_arg, default=32)
    c.add_argument("--json", action="store_true")
    return p


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _manifest_summary(m: Manifest) -> dict:
    return {"model": m.model, "version": m.version, "kind": m.kind, "created": m.created, "size": m.size,
            "files": len(m.files), "chunks": sum(len(f.digests) for f in m.files), "chunk_size": m.chunk_size,
            "codec": m.codec, "level": m.level, "metadata": m.metadata, "chunk_hash": m.hash, "strong_hash": m.strong_hash,
            "packed_chunks": len(m.packed), "packs": len(m.pack_ids())}


def _emit(args, data, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if getattr(args, "json", False) else text)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


def run_init(args) -> None:
    """`cas init` creates the store rather than opening it, so it runs before any Store.open."""
    asked = {chunk_hash(n).name for n in (args.chunk_hash, args.expect_chunk_hash) if n}
    if len(asked) > 1:
        raise CasError(f"cas init got two chunk hashes ({' and '.join(sorted(asked))}); give one")
    with Store.create(args.store, chunk_hash=asked.pop() if asked else "xxh3-128", cache_dir=False) as store:
        s = store.settings
        _emit(args, {"store": store.backend.url, "chunk_hash": s.chunk_hash, "created": s.created},
              f"created store {store.backend.url} with {s.chunk_hash} chunk keys")


def cmd_put(store: Store, args) -> None:
    m = store.put(args.path, args.model, args.label, tags=args.tag, latest=not args.no_latest,
                  chunk_size=args.chunk_size, level=args.level, metadata=dict(args.meta), strong_hash=args.strong,
                  chunker=args.chunker, codec=args.codec, pack_below=args.pack_below)
    t = store.last_transfer
    data = _manifest_summary(m) | {"sent_chunks": t.sent_chunks, "sent_raw_bytes": t.sent_raw_bytes,
                                   "sent_stored_bytes": t.sent_stored_bytes, "sent_packs": t.sent_packs,
                                   "reused_packed_chunks": t.reused_packed_chunks}
    packs = f" in {_plural(t.sent_packs, 'new pack')}" if t.sent_packs else ""
    _emit(args, data, f"stored {m.model}@{m.version}: {human_bytes(m.size)} in {_plural(data['chunks'], 'chunk')}, "
                      f"sent {t.sent_chunks} new ({human_bytes(t.sent_stored_bytes)} stored{packs})")


def cmd_get(store: Store, args) -> None:
    m = store.get(args.ref, args.path, force=args.force)
    t = store.last_transfer
    data = _manifest_summary(m) | {"path": args.path, "fetched_bytes": t.fetched_bytes, "reused_bytes": t.reused_bytes}
    _emit(args, data, f"fetched {m.model}@{m.version} to {args.path}: {human_bytes(m.size)} "
                      f"({human_bytes(t.fetched_bytes)} from the store, {human_bytes(t.reused_bytes)} reused locally)")


def cmd_copy(store: Store, args) -> None:
    with Store.open(args.to, n_workers=args.workers, progress=store.progress) as destination:
        r = store.copy(args.ref, destination, tags=args.tag)
    done = "copied" if r.manifest_copied else "already there:"
    _emit(args, r.as_dict(), f"{done} {r.model}@{r.version} to {r.destination}: sent {r.sent_chunks} of {r.chunks} "
                             f"chunks ({human_bytes(r.sent_stored_bytes)} stored)"
                             + (f", tagged {', '.join(r.tags)}" if r.tags else ""))


def cmd_ls(store: Store, args) -> None:
    if args.model is None:
        rows = []
        for model in store.models():
            try:
                tags = store.tags(model)
            except CasError as exc:  # one damaged tag entry must not hide every other model
                print(f"cas: {describe_error(exc)}", file=sys.stderr)
                tags = {}
            rows.append({"model": model, "versions": len(store.versions(model)), "tags": tags})
        lines = [f"{r['model']}\t{_plural(r['versions'], 'version')}\t" + " ".join(f"{t}={v}" for t, v in sorted(r["tags"].items()))
                 for r in rows]
        # a local store path with nothing there: a mistyped --store, most likely
        nothing_there = isinstance(store.backend, LocalBackend) and not os.path.exists(store.backend.root)
        hint = "; nothing is there yet: check --store or $CAS_STORE (`cas put` creates a store)" if nothing_there else ""
        _emit(args, rows, "\n".join(lines) if lines else f"no models in {store.backend.url}{hint}")
        return
    versions = store.versions(args.model)
    if not versions:
        raise NoSuchModel(args.model, store.backend.url)
    tags = store.tags(args.model)
    rows = []
    for v in versions:
        m = store.manifest(f"{args.model}@{v}")
        rows.append(_manifest_summary(m) | {"tags": sorted(t for t, tv in tags.items() if tv == v)})
    lines = [f"{r['version']}\t{_when(r['created'])}\t{human_bytes(r['size'])}\t{_plural(r['files'], 'file')}\t"
             + " ".join(r["tags"]) for r in rows]
    _emit(args, rows, "\n".join(lines))


def cmd_show(store: Store, args) -> None:
    m = store.manifest(args.ref)
    data = _manifest_summary(m) | {"file_list": [{"path": f.path, "size": f.size, "mode": oct(f.mode),
                                                  "chunks": len(f.digests), "chunker": describe(f.chunker, m.chunk_size)}
                                                 for f in m.files]}
    lines = [f"{m.model}@{m.version}  {m.kind}  {human_bytes(m.size)}  created {_when(m.created)}",
             f"chunk size {human_bytes(m.chunk_size)}, codec {m.codec}, zstd level {m.level}, "
             f"{_plural(data['chunks'], 'chunk')} keyed by {m.hash}"
             + (f", {m.strong_hash} per file" if m.strong_hash else "")
             + (f", {data['packed_chunks']} packed in {_plural(data['packs'], 'pack')}" if m.packed else "")]
    lines += [f"  {k} = {v}" for k, v in sorted(m.metadata.items())]
    lines += [f"  {f['mode']}  {human_bytes(f['size']):>10}  {f['chunks']:>6} chunks  {f['chunker']:<20}  {f['path']}"
              for f in data["file_list"]]
    _emit(args, data, "\n".join(lines))


def cmd_tag(store: Store, args) -> None:
    version = store.tag(args.ref, args.tag)
    print(f"{args.tag} -> {version}")


def cmd_untag(store: Store, args) -> None:
    store.untag(args.model, args.tag)
    print(f"removed tag {args.model}:{args.tag}")


def cmd_rollback(store: Store, args) -> None:
    version = store.rollback(args.model, args.tag)
    print(f"{args.model}:{args.tag} -> {version if version is not None else '(no target)'}")


def cmd_history(store: Store, args) -> None:
    entries = store.tag_history(args.model, args.tag)
    if not entries:
        raise NoSuchTag(args.model, args.tag)
    data = [{"seq": e.seq, "target": e.target, "op": e.op, "time": e.time} for e in entries]
    _emit(args, data, "\n".join(f"{e.seq}\t{_when(e.time)}\t{e.op}\t{e.target or '-'}" for e in entries))


def cmd_rm(store: Store, args) -> None:
    version = store.rm(args.ref, force=args.force)
    print(f"removed version {version}; `cas gc` reclaims the chunks no other version uses")


def cmd_verify(store: Store, args) -> None:
    report = store.verify(args.ref, full=args.full)
    what = "read and decoded" if args.full else "checked"
    summary = (f"{what} {_plural(report.chunks, 'chunk')} of {_plural(report.versions, 'version')}: "
               f"{_plural(len(report.problems), 'problem')}")
    _emit(args, report.as_dict(), "\n".join([str(p) for p in report.problems] + [summary]))
    if report.problems:
        remedies = []
        if any(p.chunk for p in report.problems):
            remedies.append("`cas repair REF PATH` restores chunks from a local copy")
        if any(p.chunk is None and p.problem.startswith("manifest") for p in report.problems):
            remedies.append("a damaged manifest comes back from another copy of the store, or goes with `cas rm`")
        if any(p.chunk is None and not p.problem.startswith("manifest") for p in report.problems):
            remedies.append("each tag problem above says how to fix it")
        raise CasError(f"{_plural(len(report.problems), 'problem')} found; " + "; ".join(remedies))


def cmd_repair(store: Store, args) -> None:
    report = store.repair(args.ref, args.path)
    _emit(args, report.as_dict(), f"{_plural(report.bad_chunks, 'bad chunk')}: {len(report.repaired)} repaired, "
                                  f"{len(report.unrepairable)} not found in {args.path}")
    if report.unrepairable:
        raise CasError(f"{_plural(len(report.unrepairable), 'chunk')} could not be repaired from {args.path!r}; "
                       "try another copy of that version")


def cmd_gc(store: Store, args) -> None:
    r = store.gc(dry_run=args.dry_run, grace=args.grace)
    verb = "would delete" if r.dry_run else "deleted"
    young_objects = r.young_chunks + r.young_packs
    young = f", {young_objects} unreferenced but too young (a later gc takes them)" if young_objects else ""
    partials = f", {_plural(r.deleted_partials, 'leftover')} of killed gets" if r.deleted_partials else ""
    restored = (f"; put back {_plural(r.restored_chunks, 'object')} a stopped gc had set aside"
                if r.restored_chunks else "")
    pending = (f"; kept what {_plural(r.pending_versions, 'version')} being published name"
               if r.pending_versions else "")
    if r.deleted_pending:
        pending += f"; {verb} {_plural(r.deleted_pending, 'record')} of puts that ended without publishing"
    _emit(args, r.as_dict(), f"{verb} {_plural(r.deleted_chunks, 'unreferenced chunk')} and "
                             f"{_plural(r.deleted_packs, 'unreferenced pack')} ({human_bytes(r.deleted_bytes)}), "
                             f"{_plural(r.deleted_staging, 'staging leftover')}, "
                             f"{_plural(r.deleted_leases, 'expired lease')}{partials}; "
                             f"kept {_plural(r.referenced_chunks, 'chunk')} and {_plural(r.referenced_packs, 'pack')} "
                             f"of {_plural(r.versions, 'version')}{young}{restored}{pending}")


def cmd_stats(store: Store, args) -> None:
    report = store.stats(args.model)
    lines = []
    for m in report["models"]:
        lines.append(f"{m['model']}: {_plural(len(m['versions']), 'version')}, logical {human_bytes(m['logical_bytes'])}, "
                     f"unique {human_bytes(m['unique_bytes'])}, stored {human_bytes(m['stored_bytes'])}, "
                     f"dedup {m['dedup_ratio']}x, compression {m['compression_ratio']}x, "
                     f"{_plural(m['objects'], 'object')} ({_plural(m['packs'], 'pack')}), "
                     f"{m['objects_per_100mb']} objects per 100 MB")
        for v in m["versions"]:
            share = v["new_raw_bytes"] / v["logical_bytes"] if v["logical_bytes"] else 0
            lines.append(f"  {v['version']:>8}  {human_bytes(v['logical_bytes']):>10}  "
                         f"adds {human_bytes(v['new_stored_bytes']):>10} stored ({share:.1%} of its bytes new)  "
                         f"{v['chunker']}")
    if not args.model:
        lines.append(f"total: logical {human_bytes(report['logical_bytes'])}, unique {human_bytes(report['unique_bytes'])}, "
                     f"stored {human_bytes(report['stored_bytes'])}, dedup {report['dedup_ratio']}x, "
                     f"compression {report['compression_ratio']}x")
    for name, c in report["codecs"].items():
        share = c["stored_bytes"] / c["raw_bytes"] if c["raw_bytes"] else 0
        lines.append(f"  codec {name}: {_plural(c['chunks'], 'chunk')}, {human_bytes(c['raw_bytes'])} raw, "
                     f"{human_bytes(c['stored_bytes'])} stored ({share:.1%})")
    _emit(args, report, "\n".join(lines))


def cmd_predict(store: Store, args) -> None:
    try:
        import numpy as np

        from .predict import parallel_predict
    except ImportError as exc:
        raise CasError(f"cas predict needs TensorFlow and numpy ({exc}); pip install 'cas[tensorflow]'") from None
    out = parallel_predict(args.ref, args.input, processes=args.processes, store=store, batch_size=args.batch_size)
    if not isinstance(out, np.ndarray):
        raise CasError(f"{args.ref} has several outputs; cas predict writes one array, use cas.predict.parallel_predict")
    np.save(args.output, out)
    _emit(args, {"ref": args.ref, "output": args.output, "shape": list(out.shape), "processes": args.processes},
          f"wrote {_plural(len(out), 'prediction')} {tuple(out.shape)} to {args.output} "
          f"({_plural(args.processes, 'process')})")


COMMANDS = {"put": cmd_put, "get": cmd_get, "copy": cmd_copy, "ls": cmd_ls, "show": cmd_show, "tag": cmd_tag, "untag": cmd_untag,
            "rollback": cmd_rollback, "history": cmd_history, "rm": cmd_rm, "stats": cmd_stats,
            "verify": cmd_verify, "repair": cmd_repair, "gc": cmd_gc, "predict": cmd_predict}


def describe_error(exc: BaseException) -> str:
    """One line for the user; the CasError tree already names the object and the remedy."""
    if isinstance(exc, CasError):
        return str(exc)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return f"cannot reach the store: {exc}; check the URL, the network and that the store (namenode, S3 endpoint) is up"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc}"
    if isinstance(exc, OSError):
        what = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
        return what + _OS_ERROR_ADVICE.get(exc.errno, "")
    return f"{type(exc).__name__}: {exc}"


# What to do about the raw file-system errors that reach the user without a CasError around them.
_OS_ERROR_ADVICE = {
    errno.EROFS: "; that file system is read-only: reads (ls, get, verify) work, for writes choose a writable store "
                 "or destination",
    errno.ENOTDIR: "; part of that path is a file, not a directory: check the --store path or the destination",
    errno.EEXIST: "; it is in the way (a file where a directory must go?): choose another path",
    errno.EBUSY: "; it is in use (a mount point?): choose another path",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "put":  # the chunker's own limits on the size (cdc: an average of 64KiB to 4MiB)
        try:
            Chunker(args.chunker, args.chunk_size)
        except ValueError as exc:
            parser.error(f"argument --chunk-size: {exc}")
    if getattr(args, "misplaced_workers", None) is not None:
        parser.error("cas predict takes --processes N (worker processes); --workers N, before the command, "
                     "sets transfer threads")
    # Library notices (a put waiting for a gc, a lapsed lease, a cache that cannot be written) as one line each.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="cas: %(message)s")
    try:
        if args.command == "init":
            run_init(args)
            return 0
        with Store.open(args.store, n_workers=args.workers, progress=True, chunk_hash=args.expect_chunk_hash) as store:
            COMMANDS[args.command](store, args)
        return 0
    except KeyboardInterrupt:
        print("cas: interrupted; nothing partial was published", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `cas ls | head`: the reader left, which is not an error
        sys.stderr.close()
        return 0
    except (CasError, OSError, ValueError, TypeError) as exc:
        if args.verbose:
            raise
        print(f"cas: {describe_error(exc)}".replace("\n", " "), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
