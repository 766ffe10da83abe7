"""The Store: put / get / versions / tags / rollback / rm / stats over any Backend.

Commit order makes the store safe for readers and concurrent writers: chunks first, then the
manifest (created exclusively, so a version label is never overwritten and two puts never get the
same number), then tags. A reader that can see a manifest can read every chunk it names.
"""

from __future__ import annotations

import logging
import errno
import os
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial

import msgpack

from . import codec, intents, maintenance, refs, settings as store_settings
from .backends import Backend, open_backend
from .backends.base import ObjectTooLarge, read_limited
from .cache import LocalCache, default_cache_root
from .chunking import DEFAULT_CHUNK_SIZE, DEFAULT_CHUNKER, Chunker
from .digest import ChunkHash, chunk_hash as chunk_hash_of
from .errors import (BadManifest, BadName, CasError, InUse, IntegrityError, NewerFormat, NoSuchModel, NoSuchTag,
                     NoSuchVersion, NotFound, SettingsConflict, StoreExists, StoreFull, StoreUnavailable, VersionExists)
from .integrity import file_digest, new_hasher
from .layout import (MANIFEST_SUFFIX, MANIFESTS, TOMBSTONE_SUFFIX, chunk_key, manifest_key, model_dir, pack_key,
                     tombstone_key)
from .leases import DEFAULT_TTL, Lease, LeaseLost, writer_lease
from .localfs import Staging, check_unchanged, scan_source
from .manifest import MAX_CHUNKS, MAX_MANIFEST_BYTES, FileEntry, Manifest, PackedChunk, pack, unpack
from .packing import DEFAULT_PACK_BELOW, REUSE_VERSIONS, Packing, reusable_locations
from .names import LATEST, Ref, check_name, is_valid_name, parse_ref
from .progress import byte_bar
from .dedup import store_stats
from .planning import plan
from .transfer import (DEFAULT_MEMORY_BUDGET, ChunkJob, EagerSends, Piece, check_memory_budget, download_chunks,
                       hash_pieces, hash_pieces_with_strong, pack_pieces, run_bounded, upload_pieces)

MAX_VERSION_RACE_RETRIES = 1000
MAX_LEASE_RENEWALS = 3  # a put whose lease lapses this often in a row gives up

log = logging.getLogger("cas")


def default_store_url() -> str:
    """``$CAS_STORE``, else ``$XDG_DATA_HOME/cas/store`` (``~/.local/share/cas/store``)."""
    if os.environ.get("CAS_STORE"):
        return os.environ["CAS_STORE"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "cas", "store")


def version_sort_key(version: str):
    """Numbers in numeric order, then labels alphabetically."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


@dataclass
class TransferStats:
    """What the last put or get moved, for reports and benchmarks."""

    chunks: int = 0  # chunks in the version
    distinct_chunks: int = 0
    sent_chunks: int = 0  # put: chunks the store lacked and were written (on their own or in packs)
    sent_packs: int = 0  # put: pack objects written (cas.packing)
    reused_packed_chunks: int = 0  # put: small chunks found in the packs of the versions it read for reuse
    sent_raw_bytes: int = 0
    sent_stored_bytes: int = 0
    fetched_bytes: int = 0  # get: raw bytes read from the store
    reused_bytes: int = 0  # get: raw bytes taken from verified local copies


class Store:
    def __init__(self, backend: Backend, *, cache_dir: str | None | bool = None, n_workers: int | None = None,
                 progress: bool = False, min_saving: float = codec.DEFAULT_MIN_SAVING,
                 direct_writes: bool = True, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        self.backend = backend
        # Bytes of chunk buffers a transfer may hold: with large chunks, fewer threads run at once
        # (see cas.transfer.workers_within), so memory stays near this whatever chunk_size x n_workers.
        self.memory_budget = check_memory_budget(memory_budget)
        # get writes fetched chunks with O_DIRECT (where the file system allows): far less CPU than
        # filling the page cache, at the price of the file not being cached for its first reader.
        self.direct_writes = direct_writes
        self.n_workers = n_workers or backend.max_workers
        self.progress = progress
        self.min_saving = codec.check_min_saving(min_saving)
        self.cache = None if cache_dir is False else LocalCache(cache_dir or default_cache_root(), backend.url)
        self.last_transfer = TransferStats()
        self.lease_ttl = DEFAULT_TTL  # seconds a writer/gc lease lives without a heartbeat
        self._settings: store_settings.StoreSettings | None = None  # None: not read yet, or the store has none
        self._settings_read = False

    def _writing(self):
        """The lease every mutation holds, so garbage collection never runs underneath it."""
        return writer_lease(self.backend, ttl=self.lease_ttl)

    @classmethod
    def open(cls, url: str | None = None, *, chunk_hash: str | None = None, cache_dir: str | None | bool = None,
             n_workers: int | None = None, progress: bool = False, direct_writes: bool = True,
             memory_budget: int = DEFAULT_MEMORY_BUDGET,
             **backend_options) -> "Store":
        """Open the store at ``url`` (a path, ``file://``, ``memory://``, ``webhdfs://`` or ``s3://`` URL).

        With no URL: ``$CAS_STORE``, else ``~/.local/share/cas/store``. ``chunk_hash`` ("xxh3-128"
        or "blake3-256") is what the caller expects the store to use: a store created with another
        is refused (SettingsConflict), and a new, empty store is created with it (as ``create``).
        Without it, the store's own setting is used, whatever it is.
        """
        backend = open_backend(url or default_store_url(), **backend_options)
        store = cls(backend, cache_dir=cache_dir, n_workers=n_workers, progress=progress, direct_writes=direct_writes,
                    memory_budget=memory_budget)
        if chunk_hash is not None:
            try:
                store._expect_chunk_hash(chunk_hash)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def create(cls, url: str | None = None, *, chunk_hash: str = store_settings.LEGACY.chunk_hash,
               **open_options) -> "Store":
        """Create a store at ``url`` with ``chunk_hash`` keys ("xxh3-128", the default, or
        "blake3-256" for a store shared by people who do not trust each other) and open it.

        The store's settings are written once, exclusively; a store that has settings already, or
        holds chunks or versions, is refused (its chunk hash cannot change).
        """
        store = cls.open(url, **open_options)
        try:
            found, created = store_settings.create(store.backend, chunk_hash_of(chunk_hash).name, ttl=store.lease_ttl)
            if not created:
                raise StoreExists(store.backend.url, found.chunk_hash)
            store._settings, store._settings_read = found, True
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.backend.close()

    # -- settings ----------------------------------------------------------------------------------

    @property
    def settings(self) -> store_settings.StoreSettings:
        """The store's settings, read once (settings never change once written); a store without
        a settings object has xxh3-128 chunk keys (``settings.LEGACY``)."""
        if not self._settings_read:
            self._settings = store_settings.read(self.backend)
            self._settings_read = True
        return self._settings or store_settings.LEGACY

    @property
    def chunk_hash(self) -> ChunkHash:
        """The hash that names this store's chunks."""
        return chunk_hash_of(self.settings.chunk_hash)

    def _reread_missing_settings(self) -> ChunkHash:
        """The chunk hash, looking again if the store had no settings object when we last looked
        (it may have been created since: writers ask under their lease, before they publish)."""
        if self._settings is None:
            self._settings_read = False
        return self.chunk_hash

    def _expect_chunk_hash(self, name: str) -> None:
        wanted = chunk_hash_of(name)
        found = store_settings.read(self.backend)
        if found is None and store_settings.is_empty(self.backend):
            found, _ = store_settings.create(self.backend, wanted.name, ttl=self.lease_ttl)
        self._settings, self._settings_read = found, True
        if self.chunk_hash != wanted:
            raise SettingsConflict(
                f"store {self.backend.url} uses {self.chunk_hash} chunk keys, not {wanted}; a store's chunk hash is "
                f"fixed when it is created: open it without asking for {wanted}, or create a new store for {wanted} keys")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- names -----------------------------------------------------------------------------------

    def models(self) -> list[str]:
        # A listed name that is not a valid model name (junk in the store) can never be addressed: skip it.
        return [m for m in self.backend.list(MANIFESTS) if is_valid_name(m) and self.versions(m)]

    def versions(self, model: str) -> list[str]:
        """Versions of ``model`` (numbers in order, then labels); [] if it has none."""
        check_name(model, "model")
        names = self.backend.list(model_dir(model))
        found = [n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX)]
        found = [v for v in found if is_valid_name(v)]  # junk names in the store are never versions
        return sorted(found, key=version_sort_key)

    def tags(self, model: str) -> dict[str, str]:
        """Current tags of ``model``: {tag: version}."""
        check_name(model, "model")
        out = {}
        for tag in refs.tag_names(self.backend, model):
            target = refs.target(self.backend, model, tag)
            if target is not None:
                out[tag] = target
        return out

    def tag_history(self, model: str, tag: str) -> list[refs.TagEntry]:
        return refs.history(self.backend, check_name(model, "model"), check_name(tag, "tag"))

    def resolve(self, ref: str | Ref) -> tuple[str, str]:
        """(model, version) that a reference names; NotFound if it names nothing."""
        r = parse_ref(ref) if isinstance(ref, str) else ref
        if r.version is not None:
            return r.model, r.version
        target = refs.target(self.backend, r.model, r.tag)
        if target is None:
            if not self.versions(r.model):
                raise NoSuchModel(r.model, self.backend.url)
            raise NoSuchTag(r.model, r.tag)
        return r.model, target

    def manifest(self, ref: str | Ref) -> Manifest:
        return self._load(*self.resolve(ref))[0]

    def _load(self, model: str, version: str) -> tuple[Manifest, bytes]:
        key = manifest_key(model, version)
        try:
            data = read_limited(self.backend, key, MAX_MANIFEST_BYTES, f"manifest of {model}@{version}")
        except ObjectTooLarge as exc:
            raise BadManifest(str(exc)) from None
        except FileNotFoundError:
            if not self.versions(model):
                raise NoSuchModel(model, self.backend.url) from None
            raise NoSuchVersion(model, version) from None
        m = unpack(data, name=f"manifest of {model}@{version}")
        if (m.model, m.version) != (model, version):
            raise BadManifest(f"manifest at {key} says it is {m.model}@{m.version}; the store is damaged, run `cas verify`")
        if m.hash != self.chunk_hash.name and m.hash != self._reread_missing_settings().name:
            raise BadManifest(f"manifest of {model}@{version} names its chunks by {m.hash} but store {self.backend.url} "
                              f"uses {self.chunk_hash} keys, so no client of this store wrote it; refusing it "
                              f"(the store's owners should delete {key})", model=model, version=version)
        return m, data

    # -- put -------------------------------------------------------------------------------------

    def put(self, local_path: str, model: str, version: str | None = None, *, tags=(), latest: bool = True,
            chunk_size: int = DEFAULT_CHUNK_SIZE, level: int = codec.DEFAULT_LEVEL,
            metadata: dict | None = None, strong_hash: str | None = None,
            chunker: str = DEFAULT_CHUNKER, codec: str = codec.DEFAULT_POLICY,
            pack_below: int = DEFAULT_PACK_BELOW) -> Manifest:
        """Store a file or directory as a new version of ``model`` and return its manifest.

        Only chunks the store lacks are compressed and sent. ``chunker`` decides where chunks
        start (cas.chunking): "auto" restarts ``chunk_size`` runs at the tensors and members of
        files cas can parse (HDF5, zip/.keras, safetensors, .npy, TensorFlow checkpoints) and cuts
        other files fixed; "fixed" cuts every file in ``chunk_size`` pieces; "cdc" cuts
        content-defined pieces of ``chunk_size`` on average. ``version`` defaults to the next
        number; an explicit label that exists (or existed and was removed) is refused. ``latest``
        and each of ``tags`` move to the new version once it is published. ``strong_hash``
        ("sha256" or "blake3") records a whole-file digest that every get verifies. ``codec`` picks
        how new chunks are stored: "auto" (byte planes where they beat zstd, as on float weights;
        zstd otherwise), "zstd" or "raw"; any chunk stays readable whichever way it was stored.
        Chunks shorter than ``pack_below`` bytes that the store lacks are written together into
        pack objects (cas.packing; 0: one object per chunk); a small chunk that the version tagged
        ``latest`` or one of the 8 newest versions of ``model`` has in a pack is pointed at, not stored.
        """
        what, outcome = f"put of {local_path!r} as {model!r}", "no partial version is visible"
        with _naming_failures(what, outcome + "; run it again to finish (only missing chunks are sent)"), \
                _store_full(self.backend.url, what, outcome, model=model):
            return self._put(local_path, model, version, tags=tags, latest=latest, chunk_size=chunk_size,
                             level=level, metadata=metadata, strong_hash=strong_hash, chunker=chunker,
                             policy=codec, packing=Packing(pack_below=pack_below))

    def _put(self, local_path, model, version, *, tags, latest, chunk_size, level, metadata, strong_hash,
             chunker, policy, packing: Packing) -> Manifest:
        check_name(model, "model")
        if version is not None:
            check_name(version, "version")
        tags = [check_name(t, "tag") for t in tags]
        cutter = Chunker(chunker, chunk_size)
        codec.check_level(level)
        codec.check_policy(policy)
        metadata = _check_metadata(metadata)
        if strong_hash is not None:
            new_hasher(strong_hash)  # unknown name or missing package: fail before any work
        chunk_hash, source_checks = self.chunk_hash, {}
        if version is not None:
            self._refuse_taken(model, version)

        kind, sources, empty_dirs = scan_source(local_path)
        total = sum(s.size for s in sources)
        fewest = sum(-(-s.size // cutter.max_piece) for s in sources)  # no chunker cuts fewer pieces
        if fewest > MAX_CHUNKS:
            raise _too_many_chunks(local_path, fewest, total, cutter)

        def draft_with(entries) -> Manifest:
            return Manifest(model=model, version=version or "", kind=kind, chunk_size=cutter.max_piece, level=level,
                            files=tuple(entries), dirs=tuple(empty_dirs), metadata=metadata, hash=chunk_hash.name,
                            strong_hash=strong_hash, codec=policy)

        # Before anything is sent: the smallest manifest these files can make (their names, metadata
        # and the fewest chunks any chunker cuts, each with the shortest length entry); exact for
        # fixed chunks, and checked again once the chunks are known.
        _check_manifest_size(draft_with(_fewest_chunks(sources, cutter.max_piece, chunk_hash.digest_size)), local_path)

        # From the first question about a chunk to moving the tags, hold an unbroken writer lease:
        # gc cannot delete a chunk this put decided not to send. A lease that lapsed (this process
        # was paused past its TTL) proves nothing, so the put asks again rather than publish on its word.
        lease, intent = self._writing(), None
        try:
            self._refuse_changed_chunk_hash(chunk_hash)
            planned = plan(sources, cutter)
            strong: dict[str, bytes] = {}
            # Chunks of their own up to the chunk size are sent as the hash pass reads them; small
            # ones wait for their packs, and cdc's longer pieces (up to 4x) for the send round, so
            # no hashing thread holds more than a chunk-sized object buffer besides what it reads.
            # A strong digest reads each file in one thread, too slow to compress in: sent after.
            eager = None if strong_hash else EagerSends(
                self.backend, own_object=lambda n: not packing.packs(n) and n <= cutter.chunk_size,
                policy=policy, level=level, min_saving=self.min_saving)
            with byte_bar(f"put {model}", total, self.progress) as bar:
                if strong_hash:  # a strong digest hashes each file in order: plan it all first
                    digests, strong = hash_pieces_with_strong(planned.pieces(), strong_hash, self.n_workers, bar,
                                                              memory_budget=self.memory_budget, chunk_hash=chunk_hash,
                                                              source_checks=source_checks)
                else:  # cdc cuts lazily in this thread while the workers hash what is cut
                    digests = hash_pieces(planned, self.n_workers, bar, memory_budget=self.memory_budget,
                                          largest=cutter.max_piece, chunk_hash=chunk_hash,
                                          source_checks=source_checks, eager=eager)
            pieces = planned.produced
            if len(pieces) > MAX_CHUNKS:
                raise _too_many_chunks(local_path, len(pieces), total, cutter)

            entries = []
            for fp, file_digests in planned.group(digests):
                src = fp.source
                file_strong = (strong.get(src.local_path) or new_hasher(strong_hash).digest()) if strong_hash else None
                entries.append(FileEntry(src.rel_path, src.size, src.mode, tuple(file_digests),
                                         tuple(n for _, n in fp.pieces), strong=file_strong, chunker=fp.chunker))
            draft = draft_with(entries)
            first_piece: dict[bytes, Piece] = {}
            for d, p in zip(digests, pieces):
                first_piece.setdefault(d, p)
            _check_manifest_size(draft, local_path)  # without its pack table (checked again with it, once known)
            # Small chunks of the versions a fine-tune most likely shares bytes with: read back and
            # checked here, their packs confirmed present under the lease.
            small = {d for d, p in first_piece.items() if packing.packs(p.length)}
            reuse = (self._checked_reuse(reusable_locations(self._reuse_tables(model, small)), first_piece, packing,
                                         chunk_hash) if small else {})
            located: dict[bytes, PackedChunk] = {}  # this put's pack table, filled by the send rounds

            keys = {"chunk_hash": chunk_hash, "source_checks": source_checks, "policy": policy, "level": level,
                    "model": model}
            # digest -> (piece, stored size): what this put stored
            sent: dict[bytes, tuple[Piece, int]] = dict(eager.sent) if eager else {}
            sends = _Sends(first_piece, packing, reuse, located, sent, confirmed=eager.confirmed if eager else set())
            lease = self._store_missing(lease, sends, **keys)
            check_unchanged(sources)  # a file rewritten during the put must not publish a mix

            def recorded() -> bytes:
                nonlocal draft
                draft = replace(draft, packed={d: located[d] for d in first_piece if d in located})
                _check_manifest_size(draft, local_path, packed=True)
                body = pack(replace(draft, version=draft.version or "1"))
                # every reader must accept what is published (a put never publishes a manifest it would refuse)
                unpack(body, name=f"the manifest of {local_path!r}")
                return body

            lease, intent = self.record_fenced(lease, recorded, partial(self._store_missing, sends=sends, lapsed=True,
                                                                        **keys), f"publishing {model}")
            published = self._publish(draft, explicit=version is not None)
            self.backend.flush()  # and the manifest before a tag can point at it
            if not lease.intact():  # paused while publishing: make sure gc left every chunk and pack
                sends.frozen = True  # the manifest is out: its pack table can no longer change
                lease = self._store_missing(lease, sends, lapsed=True, **keys)
            if latest and version is None:  # not back to an older number, should an overlapping put have moved it on
                refs.advance_tag(self.backend, model, LATEST, published.version)
            elif latest:  # a label the user chose, numeric or not, is where they asked latest to go
                refs.set_tag(self.backend, model, LATEST, published.version)
            for tag in tags:
                refs.set_tag(self.backend, model, tag, published.version)
        finally:
            if intent is not None:
                intent.withdraw()
            lease.release()
        self.last_transfer = TransferStats(chunks=len(pieces), distinct_chunks=len(first_piece),
                                           sent_chunks=len(sent), sent_raw_bytes=sum(p.length for p, _ in sent.values()),
                                           sent_stored_bytes=sum(n for _, n in sent.values()), sent_packs=sends.packs,
                                           reused_packed_chunks=sum(1 for d in published.packed if d not in sent))
        return published

    def _checked_reuse(self, reuse: dict[bytes, PackedChunk], first_piece: dict[bytes, Piece], packing: Packing,
                       chunk_hash: ChunkHash) -> dict[bytes, PackedChunk]:
        """The pack-table entries of older versions this put may point at, each read from its pack,
        decoded at this put's length and hashed. A damaged or hostile older manifest (an offset
        that points at other bytes, a length this chunk does not have) must not make a new version
        name bytes nobody checked: such an entry is dropped, and the chunk is packed anew. These are
        the small chunks of a version (about 7 MB of a 95 MB ResNet50), read once."""
        wanted = [(d, at) for d, at in reuse.items() if d in first_piece and packing.packs(first_piece[d].length)]
        problems = maintenance.check_packed(self.backend, [(d, first_piece[d].length, at) for d, at in wanted],
                                            chunk_hash, self.n_workers)
        for (d, _), problem in zip(wanted, problems):
            if problem:
                log.info("not reusing chunk %s from an older version's pack: %s", d.hex(), problem)
        return {d: at for (d, at), problem in zip(wanted, problems) if problem is None}

    def _reuse_tables(self, model: str, wanted: set[bytes]) -> list[dict[bytes, PackedChunk]]:
        """The pack-table entries, for the chunks in ``wanted``, of the versions a put of ``model``
        may point at: the one tagged ``latest`` (what a fine-tune starts from) and the
        ``REUSE_VERSIONS`` newest (a put that did not move ``latest``, a tensor that comes back),
        read in parallel, each manifest dropped once its entries are taken (a manifest of a
        million packed chunks holds ~165 MiB parsed). Reuse only saves bytes, so a version that
        cannot be read is skipped."""
        try:
            latest = refs.target(self.backend, model, LATEST)
            newest = self.versions(model)[-REUSE_VERSIONS:]
        except (CasError, OSError) as exc:
            log.info("no packs to reuse for %s (%s)", model, exc)
            return []

        def load(v: str) -> dict[bytes, PackedChunk]:
            try:
                packed = self._load(model, v)[0].packed
            except (CasError, OSError) as exc:
                log.info("not reusing the packs of %s@%s (%s)", model, v, exc)
                return {}
            return {d: at for d, at in packed.items() if d in wanted}

        chosen = [v for v in dict.fromkeys([latest, *reversed(newest)]) if v is not None]
        return run_bounded(load, chosen, self.n_workers)

    def _store_missing(self, lease: Lease, sends: _Sends, *, policy: str, level: int, model: str,
                       chunk_hash: ChunkHash, source_checks: dict, lapsed: bool = False) -> Lease:
        """Send the chunks the store lacks, fenced by the writer lease (``send_fenced``): large
        ones (and small ones once ``sends.frozen``) as objects of their own, small ones into packs
        unless a pack of a version read for reuse already holds them. Records what it stored in
        ``sends.sent`` and where small chunks are in ``sends.located``; returns the lease now held."""

        def send_round() -> None:
            to_send, to_pack = sends.plan_round(self.backend)
            with byte_bar(f"put {model}", sum(p.length for _, p in to_send + to_pack), self.progress) as bar:
                sizes = upload_pieces(self.backend, to_send, policy=policy, level=level, min_saving=self.min_saving,
                                      n_workers=self.n_workers, progress=bar, memory_budget=self.memory_budget,
                                      chunk_hash=chunk_hash, source_checks=source_checks)
                sends.sent.update((d, (p, n)) for (d, p), n in zip(to_send, sizes))
                if to_pack:
                    placed, written = pack_pieces(self.backend, to_pack, pack_size=sends.packing.pack_size,
                                                  policy=policy, level=level, min_saving=self.min_saving,
                                                  n_workers=self.n_workers, progress=bar,
                                                  memory_budget=self.memory_budget, chunk_hash=chunk_hash,
                                                  source_checks=source_checks)
                    sends.located.update(placed)
                    fresh = set(written)  # a pack found already stored (a killed try's) was not sent
                    sends.sent.update((d, (p, placed[d].length)) for d, p in to_pack if placed[d].pack in fresh)
                    sends.packs += len(written)

        return self.send_fenced(lease, send_round, f"publishing {model}", lapsed=lapsed)

    def send_fenced(self, lease: Lease, send_round: Callable[[], None], doing: str, *, lapsed: bool = False) -> Lease:
        """Run ``send_round`` (ask this store which chunks it lacks, send them) and make what it sent
        durable, until the writer lease held throughout; returns the lease now held.

        If the lease lapsed meanwhile (or ``lapsed``), a gc may have deleted chunks that were
        skipped or sent: take a fresh lease (waiting for that gc) and ask again. Put and copy share it.
        """
        try:
            for _ in range(MAX_LEASE_RENEWALS):
                if lapsed:
                    log.warning("the writer lease lapsed while %s (the process was paused or cut off for over %.0f s); "
                                "asking %s again which chunks it has", doing, lease.ttl, self.backend.url)
                    lease.release()
                    lease = self._writing()
                send_round()
                self.backend.flush()  # every chunk durable before a manifest can name it
                if lease.intact(margin=lease.ttl / 2):
                    return lease
                lapsed = True
            lease.check(doing)  # raises: the lease keeps lapsing
            return lease
        except BaseException:
            lease.release()  # the caller knows only the lease it passed: a fresh one would renew forever
            raise

    def record_fenced(self, lease: Lease, manifest_bytes: Callable[[], bytes], resend: Callable[[Lease], Lease],
                      doing: str) -> tuple[Lease, intents.Intent]:
        """Record the manifest about to be published (``manifest_bytes()``, cas.intents) and make
        sure the writer lease held until the record was stored, so every gc from then on keeps what
        it names, however late the manifest lands. If the lease lapsed, the record may have come
        after a gc listed the records: withdraw it, ask the store again (``resend``, which returns
        the lease then held) and record anew. Returns (the lease held, the record). Put and copy share it.
        """
        try:
            for attempt in range(MAX_LEASE_RENEWALS):
                intent = intents.record(self.backend, lease, manifest_bytes())
                if lease.intact(margin=lease.ttl / 2):
                    return lease, intent
                intent.withdraw()
                if attempt + 1 < MAX_LEASE_RENEWALS:
                    lease = resend(lease)
        except BaseException:
            lease.release()  # the caller knows only the lease it passed (see send_fenced)
            raise
        lease.release()
        raise LeaseLost(f"the writer lease on {self.backend.url} lapsed {MAX_LEASE_RENEWALS} times in a row while "
                        f"{doing} (this process keeps being paused or cut off); nothing was published, run it again")

    def _refuse_changed_chunk_hash(self, chunk_hash: ChunkHash) -> None:
        """Under the writer lease: a store that had no settings object may have been created
        (with other keys) since this put hashed its chunks."""
        if self._reread_missing_settings() != chunk_hash:
            raise SettingsConflict(f"store {self.backend.url} was created with {self.chunk_hash} chunk keys while this "
                                   f"put hashed with {chunk_hash}; nothing was published, run the put again")

    def _refuse_taken(self, model: str, version: str) -> None:
        taken = {manifest_key(model, version), tombstone_key(model, version)} - self.backend.missing(
            [manifest_key(model, version), tombstone_key(model, version)])
        if manifest_key(model, version) in taken:
            raise VersionExists(model, version)
        if taken:
            raise VersionExists(model, version, "was removed and its label stays reserved")

    def _publish(self, draft: Manifest, *, explicit: bool) -> Manifest:
        if explicit:
            try:
                self.backend.create(manifest_key(draft.model, draft.version), pack(draft))
            except FileExistsError:
                raise VersionExists(draft.model, draft.version, "was created by another writer meanwhile") from None
            return draft
        for _ in range(MAX_VERSION_RACE_RETRIES):
            m = replace(draft, version=str(self._next_number(draft.model)))
            try:
                self.backend.create(manifest_key(m.model, m.version), pack(m))
                return m
            except FileExistsError:
                continue  # another put took this number first: take the next
        raise CasError(f"could not assign a version number for {draft.model!r}: too many concurrent writers; try again")

    def _next_number(self, model: str) -> int:
        numbers = [0]
        for name in self.backend.list(model_dir(model)):
            stem = name.rsplit(".", 1)[0]
            if stem.isdigit() and (name.endswith(MANIFEST_SUFFIX) or name.endswith(TOMBSTONE_SUFFIX)):
                numbers.append(int(stem))
        return max(numbers) + 1

    # -- get -------------------------------------------------------------------------------------

    def get(self, ref: str | Ref, local_path: str, *, force: bool = False) -> Manifest:
        """Materialise a version at ``local_path`` (a file or a directory, as it was put).

        Chunks are fetched in parallel, verified, and written at their offsets into a staged copy
        that is renamed into place at the end. Packed chunks are read by range (adjacent ones of a
        pack in one read), falling back to a chunk's own object if its pack is missing or damaged.
        Chunks that verified local copies of other versions already hold are read from disk instead
        of the store.
        """
        with _naming_failures(f"get of {str(ref)!r}", f"nothing was written to {local_path!r}"):
            manifest, packed = self._load(*self.resolve(ref))
            self._materialise(manifest, local_path, force=force)
        self._cache_quietly("remember where it was fetched", self.cache.remember if self.cache else None,
                            manifest, packed, local_path)
        return manifest

    def _cache_quietly(self, what: str, action, *args):
        """Run a cache ``action``; a cache that cannot be used (read-only, full) costs reuse, not the get."""
        if action is None:
            return None
        try:
            return action(*args)
        except OSError as exc:
            log.warning("the local cache at %s could not %s (%s); cas works without it, but set $CAS_CACHE_DIR "
                        "to a writable directory to reuse chunks locally", self.cache.root, what, exc)
            return None

    def checkout(self, ref: str | Ref) -> str:
        """A verified local copy of a version in the cache, fetched only if needed; returns its path."""
        if not self.cache:
            raise CasError("checkout needs the local cache; open the store without cache_dir=False")
        with _naming_failures(f"checkout of {str(ref)!r}", "no checkout was made"):
            manifest, packed = self._load(*self.resolve(ref))
            path = self.cache.checkout_path(manifest)
            if self.cache.is_complete(manifest):
                self.last_transfer = TransferStats(chunks=sum(len(f.digests) for f in manifest.files))
                return path
            self.cache.forget_checkout(manifest.model, manifest.version)
            self._materialise(manifest, path, force=True, owned=True)
        self.cache.mark_complete(manifest)
        self.cache.remember(manifest, packed, path)
        return path

    def _materialise(self, manifest: Manifest, local_path: str, *, force: bool, owned: bool = False) -> None:
        """``owned``: ``local_path`` is the cache's own checkout of this version, replaced whatever it holds."""
        previous = self.cache.tree_at(local_path) if self.cache and force and not owned else None
        staging = Staging(manifest, local_path, force=force, previous_checkout=previous, owned=owned)
        self._cache_quietly("note where this get stages", self.cache.note_staging_dir if self.cache else None,
                            os.path.dirname(staging.path))
        staging.prepare()
        try:
            jobs: dict[bytes, list] = defaultdict(list)
            lengths: dict[bytes, int] = {}
            labels: dict[bytes, str] = {}
            for f in manifest.files:
                target = staging.file_path(f.path)
                label = f"{manifest.model}@{manifest.version} file {f.path!r}"  # one string per file, not per chunk
                for offset, length, d in f.chunks():
                    jobs[d].append((target, offset))
                    lengths[d] = length
                    labels.setdefault(d, label)
            job_list = [ChunkJob(d, lengths[d], tuple(t), labels[d], manifest.packed.get(d)) for d, t in jobs.items()]
            seeds = self._cache_quietly("list local copies", self.cache.seeds if self.cache else None, manifest.model)
            with byte_bar(f"get {manifest.model}@{manifest.version}", manifest.size, self.progress) as bar:
                chunk_hash = chunk_hash_of(manifest.hash)  # the store's: checked when it was loaded
                fetched, reused = download_chunks(self.backend, job_list, n_workers=self.n_workers,
                                                  seed=partial(seeds.lookup, chunk_hash=chunk_hash) if seeds else None,
                                                  progress=bar, direct=self.direct_writes, memory_budget=self.memory_budget,
                                                  chunk_hash=chunk_hash)
            if manifest.strong_hash:
                self._check_strong(manifest, staging)
            staging.commit()
        except OSError as exc:
            staging.discard()
            raise staging.explain(exc) from None
        except BaseException:
            staging.discard()
            raise
        self.last_transfer = TransferStats(chunks=sum(len(f.digests) for f in manifest.files),
                                           distinct_chunks=len(job_list), fetched_bytes=fetched, reused_bytes=reused)

    def _check_strong(self, manifest: Manifest, staging: Staging) -> None:
        def check(f: FileEntry) -> None:
            if file_digest(staging.file_path(f.path), manifest.strong_hash) != f.strong:
                raise IntegrityError(
                    f"file {f.path!r} of {manifest.model}@{manifest.version} does not match its {manifest.strong_hash} "
                    f"although every chunk matched its {manifest.hash} key: the store holds forged or colliding chunks; "
                    "nothing was written, report this to the store's owners")

        run_bounded(check, manifest.files, self.n_workers)

    # -- copy ------------------------------------------------------------------------------------

    def copy(self, ref: str | Ref, destination: "Store", *, tags=()):
        """Copy one version, with the chunks ``destination`` lacks, to another store; the version
        label is kept and ``tags`` are moved there. Returns a ``cas.copy.CopyReport``."""
        from .copy import copy_version

        with _naming_failures(f"copy of {str(ref)!r} to {destination.backend.url}",
                              "no partial version is visible there; run it again to finish (only missing chunks are sent)"):
            return copy_version(self, ref, destination, tags=tags, progress=self.progress)

    # -- tags ------------------------------------------------------------------------------------

    def tag(self, ref: str | Ref, tag: str) -> str:
        """Point ``tag`` at the version ``ref`` names; returns that version."""
        check_name(tag, "tag")
        model, version = self.resolve(ref)
        self._load(model, version)  # the version must exist
        with self._writing():
            refs.set_tag(self.backend, model, tag, version)
            if not self._exists(model, version):
                # removed between the check and the move (an rm of it ran meanwhile): a tag on a
                # removed version is an outage for whoever loads by tag, so put it back
                before = refs.previous_target(self.backend, model, tag, version, exists=self._exists)
                refs.move_off(self.backend, model, tag, version, before)
                raise NoSuchVersion(model, version)
        return version

    def untag(self, model: str, tag: str) -> None:
        check_name(model, "model")
        check_name(tag, "tag")
        with self._writing():
            refs.remove_tag(self.backend, model, tag)

    def rollback(self, model: str, tag: str = LATEST) -> str:
        """Move ``tag`` back to its previous target; returns the version it now names."""
        check_name(model, "model")
        check_name(tag, "tag")
        with self._writing():
            entry = refs.rollback_tag(self.backend, model, tag, exists=self._exists)
        return entry.target

    def _exists(self, model: str, version: str) -> bool:
        return not self.backend.missing([manifest_key(model, version)])

    # -- rm --------------------------------------------------------------------------------------

    def rm(self, ref: str | Ref, *, force: bool = False) -> str:
        """Remove one version (``MODEL@VERSION``). Its chunks stay until ``gc``.

        ``latest`` moves to the newest remaining version. Other tags on the version make this
        fail unless ``force``, which removes those tags too.
        """
        r = parse_ref(ref) if isinstance(ref, str) else ref
        if r.version is None:
            raise BadName(f"rm needs an explicit MODEL@VERSION, got {str(r)!r}; versions are never removed by tag")
        model, version = r.model, r.version
        try:
            self._load(model, version)
        except NotFound:
            if tombstone_key(model, version) in self.backend.missing([tombstone_key(model, version)]):
                raise
            # removed already (perhaps by an rm that was killed before it fixed the tags): finish the job
        except NewerFormat:
            raise  # healthy for the cas that wrote it: upgrade, then remove it
        except BadManifest as exc:  # damaged: removing it is how the store gets past it (gc, stats)
            log.warning("removing %s@%s, whose manifest is damaged (%s)", model, version, exc)
        pinned = [t for t, v in self.tags(model).items() if v == version and t != LATEST]
        if pinned and not force:
            raise InUse(f"{model}@{version} is tagged {', '.join(pinned)}; move or remove those tags first, or use --force",
                        model=model, version=version, tag=pinned[0])
        with self._writing():
            self._remove_version(model, version, pinned)
        return version

    def _remove_version(self, model: str, version: str, pinned: list[str]) -> None:
        """Tags first, then the tombstone, then the manifest: an rm killed at any point leaves no tag
        pointing at a removed version, and running it again finishes it."""
        # Every tag move here is conditional (refs.move_off): a tag someone moved elsewhere
        # meanwhile (a put moving latest to its new version, prod moved on) is left alone.
        for tag in pinned:
            refs.move_off(self.backend, model, tag, version, None)
        if refs.target(self.backend, model, LATEST) == version:
            created = {}
            for v in self.versions(model):
                if v == version:
                    continue
                try:
                    created[v] = self._load(model, v)[0].created
                except NewerFormat:
                    raise  # it may be the newest: which one latest moves to is for a cas that reads it
                except BadManifest:  # a damaged version is no place for latest
                    continue
            newest = max(created, key=created.get) if created else None
            refs.move_off(self.backend, model, LATEST, version, newest)
        try:
            self.backend.create(tombstone_key(model, version), b"")
        except FileExistsError:
            pass
        self.backend.delete(manifest_key(model, version))
        # A tag moved onto the version while it was being removed (its check saw it still there)
        # would now point at nothing: move it back to where it pointed before.
        for tag, target in self.tags(model).items():
            if target == version:
                before = refs.previous_target(self.backend, model, tag, version, exists=self._exists)
                if refs.move_off(self.backend, model, tag, version, before) is not None:
                    log.warning("tag %s:%s was moved to version %s while it was being removed; it points "
                                "to %s again", model, tag, version, before or "nothing (untagged)")

    # -- upkeep ------------------------------------------------------------------------------------

    def verify(self, ref: str | Ref | None = None, *, full: bool = False) -> maintenance.VerifyReport:
        """Check the chunks of one version (or all): present, and with ``full`` intact."""
        return maintenance.verify(self, ref, full=full)

    def repair(self, ref: str | Ref, local_path: str) -> maintenance.RepairReport:
        """Restore a version's damaged or missing chunks from a local copy of it."""
        return maintenance.repair(self, ref, local_path)

    def gc(self, *, dry_run: bool = False, wait: float = 600.0, staging_age: float = maintenance.STAGING_MAX_AGE,
           grace: float | None = None) -> maintenance.GcReport:
        """Delete chunks and packs no version references (safe while other processes put).

        Chunks and packs younger than ``grace`` seconds (default: the lease TTL, 60 s) are kept for a later gc.
        """
        return maintenance.gc(self, dry_run=dry_run, wait=wait, staging_age=staging_age, grace=grace)

    # -- stats -----------------------------------------------------------------------------------

    def stats(self, model: str | None = None) -> dict:
        """Dedup and compression figures for one model or the whole store (cas.dedup.store_stats)."""
        return store_stats(self, model)


class _Sends:
    """What one put must store, decided afresh each send round from one bulk ``missing`` question
    (so a round after a lapsed lease re-checks reused packs exactly as it re-checks chunks); the
    first round skips the chunks the hash pass already found or sent (``confirmed``).

    A small chunk (``packing.packs``) is taken from, in order: its own object if the store has one
    (a store written before packs); the pack this put already placed it in; a pack of a version read
    for reuse (``reuse``); else it goes in a new pack. Once the manifest is published (``frozen``),
    its pack table is fixed: a small chunk whose pack vanished gets an object of its own, which
    every reader falls back to.
    """

    def __init__(self, first_piece: dict[bytes, Piece], packing: Packing, reuse: dict[bytes, PackedChunk],
                 located: dict[bytes, PackedChunk], sent: dict, confirmed: set[bytes] = frozenset()) -> None:
        self.first_piece = first_piece
        # chunks whose own object the hash pass found or sent under the lease the first round runs
        # under: that round need not ask about them again (if the lease lapses, the next asks all)
        self.confirmed = set(confirmed)
        self.packing = packing
        self.small = {d for d, p in first_piece.items() if packing.packs(p.length)}
        self.reuse = {d: at for d, at in reuse.items() if d in self.small}
        self.located = located
        self.sent = sent
        self.frozen = False
        self.packs = 0

    def plan_round(self, backend) -> tuple[list[tuple[bytes, Piece]], list[tuple[bytes, Piece]]]:
        """(chunks to send as objects of their own, chunks to pack), in version order."""
        pack_ids = {at.pack for at in self.located.values()}
        if not self.frozen:
            pack_ids |= {at.pack for at in self.reuse.values()}
        pack_keys = {pid: pack_key(pid.hex()) for pid in pack_ids}
        confirmed, self.confirmed = self.confirmed, set()
        missing = backend.missing([chunk_key(d.hex()) for d in self.first_piece if d not in confirmed]
                                  + list(pack_keys.values()))
        gone = {pid for pid, key in pack_keys.items() if key in missing}
        to_send, to_pack = [], []
        for d, p in self.first_piece.items():
            has_own = d in confirmed or chunk_key(d.hex()) not in missing
            if d not in self.small or self.frozen:
                at = self.located.get(d)
                if not has_own and (at is None or at.pack in gone):
                    to_send.append((d, p))
                continue
            if has_own:
                self.located.pop(d, None)
                continue
            at = self.located.get(d)
            if at is not None and at.pack not in gone:
                continue
            at = self.reuse.get(d)
            if at is not None and at.pack not in gone:
                self.located[d] = at
                continue
            self.located.pop(d, None)
            to_pack.append((d, p))
        return to_send, to_pack


def _check_manifest_size(draft: Manifest, local_path: str, *, packed: bool = False) -> None:
    packed_size = len(pack(draft))
    if packed_size > MAX_MANIFEST_BYTES:
        fix = ("put it with --pack-below 0 (its pack table is what does not fit), or store it as several models"
               if packed else "store it as several models")
        raise CasError(f"the manifest of {local_path!r} would be {packed_size} bytes, over the {MAX_MANIFEST_BYTES}-byte "
                       f"limit (too many files or chunks, or too much metadata); {fix}")


def _fewest_chunks(sources, max_piece: int, digest_size: int) -> list[FileEntry]:
    """Each file with the fewest chunks any chunker cuts it into, each with the shortest length
    entry: the smallest manifest these files can make."""
    placeholder = b"\0" * digest_size
    return [FileEntry(s.rel_path, s.size, s.mode, (placeholder,) * (n := -(-s.size // max_piece)), (1,) * n)
            for s in sources]


def _too_many_chunks(local_path: str, n_pieces: int, total: int, cutter) -> CasError:
    return CasError(f"{local_path!r} cuts into {n_pieces} chunks ({cutter.name}, {cutter.chunk_size} bytes); a version "
                    f"holds at most {MAX_CHUNKS}: use a chunk size of at least {-(-total // MAX_CHUNKS)} bytes")


@contextmanager
def _naming_failures(what: str, outcome: str):
    """An unreachable store mid-operation: say which operation stopped and what that left (the
    backend's message names the key and what to check)."""
    try:
        yield
    except StoreUnavailable:
        raise
    except (ConnectionError, TimeoutError) as exc:
        raise StoreUnavailable(f"{what} stopped ({outcome}): {exc}") from exc


@contextmanager
def _store_full(store_url: str, what: str, outcome: str, **fields):
    """A store out of space ([Errno 28]) or quota as one line naming the store and what to do.
    (A put writes only to the store, so any ENOSPC it meets is the store's.)"""
    try:
        yield
    except CasError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(store_url, what, outcome, **fields) from None
        raise


def _check_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise ValueError("metadata must be a dict with string keys")
    try:
        msgpack.packb(metadata)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must hold only msgpack values (str, int, float, bool, None, lists, dicts): {exc}") from None
    return metadata
