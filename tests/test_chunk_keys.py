"""Chunk keys an untrusting team can rely on: store settings, blake3-256 keys, and what each setting stops.

The attack (issue 10 item 3): xxh3-128's secret is public, so someone who can put to a shared store
can craft a chunk with the key of a chunk of someone else's model and plant it first; that put then
skips its real chunk. ``forged_pair`` builds such a pair for real (no monkeypatching).
"""

import os
import random
import struct

import pytest
import xxhash

from cas import BadManifest, CorruptChunk, IntegrityError, Store
from cas import settings as store_settings
from cas.digest import BLAKE3_256, XXH3_128
from cas.errors import AlreadyExists, BadSettings, SettingsConflict
from cas.layout import SETTINGS, chunk_key, manifest_key
from cas.manifest import FileEntry, Manifest, pack, unpack
from tests.conftest import write

CHUNK = 64 * 1024
# The first 32 bytes of XXH3's default secret (public: XXH3_kSecret in xxhash.h).
XXH3_SECRET = bytes.fromhex("b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f")


def forged_pair(n: int, seed: int = 0) -> tuple[bytes, bytes]:
    """(victim bytes, forged bytes): different, same xxh3-128 digest, ``n`` > 1 KiB.

    XXH3 accumulates lane 0 of stripe s as acc[1] += v_s and acc[0] += lo32(v_s ^ k_s) * hi32(v_s ^ k_s)
    (k_s: the secret's 8 bytes at 8 s), and scrambles only after 16 stripes. With lo32(v_s) = lo32(k_s)
    the product is 0 whatever the high half, so swapping the high halves of stripes 0 and 1 keeps both
    sums, hence the digest."""
    k = [struct.unpack_from("<Q", XXH3_SECRET, 8 * s)[0] for s in range(2)]
    victim = bytearray(random.Random(seed).randbytes(n))
    high = [struct.unpack_from("<Q", victim, 64 * s)[0] >> 32 for s in range(2)]
    high[1] ^= 1 if high[0] == high[1] else 0
    forged = bytearray(victim)
    for s in range(2):
        struct.pack_into("<Q", victim, 64 * s, (k[s] & 0xFFFFFFFF) | high[s] << 32)
        struct.pack_into("<Q", forged, 64 * s, (k[s] & 0xFFFFFFFF) | high[1 - s] << 32)
    return bytes(victim), bytes(forged)


def test_the_forged_pair_is_a_real_xxh3_collision_and_not_a_blake3_one():
    victim, forged = forged_pair(CHUNK)
    assert victim != forged
    assert xxhash.xxh3_128_digest(victim) == xxhash.xxh3_128_digest(forged)
    assert BLAKE3_256.digest(victim) != BLAKE3_256.digest(forged)


def _plant_then_put(url, tmp_path, **put_options):
    """The attacker puts a file whose first chunk is the forgery; then the victim puts its model."""
    victim_chunk, forged_chunk = forged_pair(CHUNK)
    rest = random.Random(1).randbytes(3 * CHUNK)
    attacker = Store.open(url, cache_dir=False)
    # as an object of its own, which every model's put takes as "already there" (a packed chunk is
    # pointed at only from the same model's recent versions)
    attacker.put(str(write(tmp_path / "innocent.bin", forged_chunk)), "innocent", chunk_size=CHUNK, pack_below=0)
    victim = Store.open(url, cache_dir=False)
    model = write(tmp_path / "model.bin", victim_chunk + rest)
    victim.put(str(model), "model", chunk_size=CHUNK, **put_options)
    return victim, model.read_bytes(), forged_chunk + rest


def test_with_xxh3_keys_a_planted_collision_replaces_the_victims_bytes(tmp_path):
    """What the README's threat model warns about: this is why xxh3 keys are for trusted writers only."""
    store, real, attackers = _plant_then_put(str(tmp_path / "store"), tmp_path)
    assert store.last_transfer.sent_chunks == 3  # the victim's first chunk was "already there"
    store.get("model", str(tmp_path / "got.bin"))
    assert (tmp_path / "got.bin").read_bytes() == attackers != real
    assert store.verify(full=True).problems == []  # every chunk matches its key: xxh3 cannot tell


def test_with_xxh3_keys_and_a_strong_digest_get_refuses_and_verify_full_names_the_file(tmp_path):
    store, _real, _ = _plant_then_put(str(tmp_path / "store"), tmp_path, strong_hash="sha256")
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        store.get("model", str(tmp_path / "got.bin"))
    assert not (tmp_path / "got.bin").exists()
    report = store.verify(full=True)
    assert [(p.model, p.version, p.file, p.chunk) for p in report.problems] == [("model", "1", "model.bin", None)]
    assert "does not match its sha256 digest" in report.problems[0].problem
    assert report.checked_bytes == 4 * CHUNK  # the model streamed whole (the forged chunk is also the attacker's)
    assert store.verify("model@1").problems == []  # without --full only presence is checked


def test_with_blake3_keys_the_victims_real_bytes_are_stored_and_returned(tmp_path, store_url):
    Store.create(store_url, chunk_hash="blake3").close()
    store, real, _ = _plant_then_put(store_url, tmp_path, strong_hash="sha256")
    assert store.last_transfer.sent_chunks == 4  # nothing of the victim's was skipped
    store.get("model", str(tmp_path / "got.bin"))
    assert (tmp_path / "got.bin").read_bytes() == real
    assert store.verify(full=True).problems == []


def test_with_blake3_keys_junk_planted_under_a_known_key_fails_loudly_and_is_repaired(tmp_path):
    """Raw write access to chunks/ still lets someone who knows your bytes plant junk under their key
    before your put: a denial of service, never wrong bytes."""
    url = str(tmp_path / "store")
    store = Store.create(url, chunk_hash="blake3-256", cache_dir=False)
    model = write(tmp_path / "model.bin", random.Random(2).randbytes(2 * CHUNK))
    key = chunk_key(BLAKE3_256.digest(model.read_bytes()[:CHUNK]).hex())
    from cas import codec
    store.backend.create(key, codec.encode(b"junk" * (CHUNK // 4)))
    store.put(str(model), "m", chunk_size=CHUNK)
    with pytest.raises(CorruptChunk):
        store.get("m", str(tmp_path / "got.bin"))
    assert [p.problem.split(":")[0] for p in store.verify(full=True).problems] == ["corrupt"]
    assert store.repair("m@1", str(model)).repaired == [key.rsplit("/", 1)[-1]]
    store.get("m", str(tmp_path / "got.bin"))
    assert (tmp_path / "got.bin").read_bytes() == model.read_bytes()


# -- store settings ------------------------------------------------------------------------------

def test_a_blake3_store_keys_every_chunk_by_blake3_for_every_client(tmp_path, store_url):
    Store.create(store_url, chunk_hash="blake3").close()
    data = random.Random(3).randbytes(3 * CHUNK + 5)
    with Store.open(store_url, cache_dir=False) as other:  # asks for nothing: reads the store's setting
        assert other.chunk_hash is BLAKE3_256
        m = other.put(str(write(tmp_path / "w.bin", data)), "m", chunk_size=CHUNK)
    assert m.hash == "blake3-256" and all(len(d) == 32 for d in m.files[0].digests)
    assert m.files[0].digests[0] == BLAKE3_256.digest(data[:CHUNK])
    with Store.open(store_url, cache_dir=False, chunk_hash="blake3") as again:
        assert again.manifest("m@1") == m
        again.get("m", str(tmp_path / "got.bin"))
        assert again.verify(full=True).problems == []
    assert (tmp_path / "got.bin").read_bytes() == data


def test_a_client_asking_for_another_hash_gets_one_line(tmp_path):
    url = str(tmp_path / "store")
    Store.create(url, chunk_hash="blake3").close()
    with pytest.raises(SettingsConflict, match="uses blake3-256 chunk keys, not xxh3-128") as err:
        Store.open(url, chunk_hash="xxh3-128")
    assert "\n" not in str(err.value)
    with pytest.raises(AlreadyExists, match="already exists .with blake3-256"):
        Store.create(url, chunk_hash="blake3")
    with pytest.raises(ValueError, match="unknown chunk hash 'sha1'"):
        Store.open(url, chunk_hash="sha1")


def test_open_with_a_chunk_hash_creates_a_new_store_once(tmp_path):
    url = str(tmp_path / "store")
    Store.open(url, chunk_hash="blake3").close()
    Store.open(url, chunk_hash="blake3").close()  # the second client finds it and agrees
    data = open(os.path.join(url, SETTINGS), "rb").read()
    assert store_settings.unpack(data).chunk_hash == "blake3-256"


def test_a_store_without_settings_keeps_xxh3_keys_and_cannot_switch(tmp_path):
    url = str(tmp_path / "store")
    with Store.open(url, cache_dir=False) as old:
        m = old.put(str(write(tmp_path / "w.bin", b"x" * 1000)), "m")
    assert m.hash == "xxh3-128" and not os.path.exists(os.path.join(url, SETTINGS))
    with pytest.raises(SettingsConflict, match="uses xxh3-128 chunk keys, not blake3-256"):
        Store.open(url, chunk_hash="blake3")
    with pytest.raises(SettingsConflict, match="already holds chunks or versions keyed by xxh3-128"):
        Store.create(url, chunk_hash="blake3")
    with pytest.raises(AlreadyExists, match="already exists"):
        Store.create(url)
    with Store.open(url, chunk_hash="xxh3", cache_dir=False) as same:
        assert same.manifest("m@1") == m  # old manifests stay readable
    assert not os.path.exists(os.path.join(url, SETTINGS))


def test_a_put_that_hashed_before_the_store_was_created_with_other_keys_publishes_nothing(tmp_path):
    url = str(tmp_path / "store")
    early = Store.open(url, cache_dir=False)
    assert early.chunk_hash is XXH3_128  # an empty store without settings, as seen before the put
    Store.create(url, chunk_hash="blake3").close()
    with pytest.raises(SettingsConflict, match="created with blake3-256 chunk keys while this put hashed"):
        early.put(str(write(tmp_path / "w.bin", b"x" * 1000)), "m")
    assert Store.open(url).models() == []


def test_a_manifest_keyed_by_another_hash_than_the_stores_is_refused(tmp_path):
    url = str(tmp_path / "store")
    store = Store.create(url, chunk_hash="blake3", cache_dir=False)
    entry = FileEntry("w.bin", 3, 0o644, (XXH3_128.digest(b"abc"),), (3,))
    foreign = Manifest(model="m", version="1", kind="file", chunk_size=CHUNK, level=3, files=(entry,), hash="xxh3-128")
    store.backend.create(manifest_key("m", "1"), pack(foreign))
    with pytest.raises(BadManifest, match="names its chunks by xxh3-128 but store .* uses blake3-256 keys"):
        store.manifest("m@1")
    assert "manifest unreadable" in store.verify().problems[0].problem


def test_manifests_with_32_byte_digests_round_trip_and_wrong_sizes_are_refused():
    entry = FileEntry("w.bin", 6, 0o644, (BLAKE3_256.digest(b"abc"), BLAKE3_256.digest(b"def")), (3, 3))
    m = Manifest(model="m", version="1", kind="file", chunk_size=3, level=3, files=(entry,), hash="blake3-256")
    assert unpack(pack(m)) == m
    with pytest.raises(BadManifest, match="lists 4 digests but 2 lengths"):
        unpack(pack(Manifest(model="m", version="1", kind="file", chunk_size=3, level=3, files=(entry,))))


@pytest.mark.parametrize("doc, message", [
    (b"\xc1", "not valid msgpack"),
    ({"format": 2, "chunk_hash": "xxh3-128", "created": 0.0}, "format 2; this cas reads format 1"),
    ({"format": 1, "chunk_hash": "md5", "created": 0.0}, "chunk hash 'md5'"),
    ({"format": 1, "chunk_hash": "blake3-256", "created": 0.0, "packs": True}, "does not know .packs.; upgrade cas"),
    ({"format": 1, "chunk_hash": "blake3-256", "created": "now"}, "created is not a number"),
    ([1, 2], "not a msgpack map"),
])
def test_bad_settings_are_refused_naming_the_problem(tmp_path, doc, message):
    import msgpack
    data = doc if isinstance(doc, bytes) else msgpack.packb(doc)
    with pytest.raises(BadSettings, match=message):
        store_settings.unpack(data)
    url = str(tmp_path / "store")
    os.makedirs(url)
    open(os.path.join(url, SETTINGS), "wb").write(data)
    with pytest.raises(BadSettings, match=f"settings of store .*{SETTINGS}"):
        Store.open(url).put(str(write(tmp_path / "w.bin", b"x")), "m")
    assert Store.open(url).backend.list("manifests") == []


def test_settings_round_trip():
    s = store_settings.StoreSettings(chunk_hash="blake3-256", created=12.5)
    assert store_settings.unpack(store_settings.pack(s)) == s


def test_a_huge_settings_object_is_refused_without_reading_it_whole(tmp_path):
    url = str(tmp_path / "store")
    os.makedirs(url)
    with open(os.path.join(url, SETTINGS), "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of junk
    with pytest.raises(ValueError, match="larger than the 65536-byte limit"):
        Store.open(url).chunk_hash
