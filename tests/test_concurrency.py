"""Several processes writing one model at once, and readers watching them."""

import os
import subprocess
import sys
import textwrap

from cas import Store

WRITER = textwrap.dedent("""
    import sys
    from cas import Store
    url, writer, src_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    store = Store.open(url, cache_dir=False, n_workers=2)
    for i in range(3):
        name = f"{src_dir}/w{writer}-{i}.bin"
        m = store.put(name, "shared", chunk_size=64 * 1024, tags=[f"writer{writer}"], metadata={"source": name})
        print(m.version, flush=True)
""")

READER = textwrap.dedent("""
    import os, sys, time
    from cas import Store, NotFound
    url, out_dir = sys.argv[1], sys.argv[2]
    store = Store.open(url, cache_dir=False, n_workers=2)
    seen = 0
    deadline = time.time() + 60
    while time.time() < deadline:
        for v in store.versions("shared"):
            dest = f"{out_dir}/v{v}"
            if not os.path.exists(dest):
                m = store.get(f"shared@{v}", dest)   # must never see a partial version
                assert open(dest, "rb").read() == open(m.metadata["source"], "rb").read(), v
                seen += 1
        if seen >= 12:
            break
        time.sleep(0.05)
    print(seen)
""")


def test_concurrent_writer_processes_and_a_reader(tmp_path, process_shared_url):
    src = tmp_path / "src"
    src.mkdir()
    base = os.urandom(1 << 20)
    for w in range(4):
        for i in range(3):  # overlapping content: each version changes one 64 KiB chunk of a shared base
            data = bytearray(base)
            data[(w * 3 + i) * 65536] ^= 0xFF
            (src / f"w{w}-{i}.bin").write_bytes(bytes(data))
    url = process_shared_url
    out = tmp_path / "read"
    out.mkdir()
    reader = subprocess.Popen([sys.executable, "-c", READER, url, str(out)], stdout=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(w), str(src)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for w in range(4)]
    results = [w.communicate(timeout=120) for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0], [e for _, e in results]
    versions = sorted(int(v) for o, _ in results for v in o.split())
    assert versions == list(range(1, 13))  # distinct numbers, none lost
    r_out, _ = reader.communicate(timeout=120)
    assert reader.returncode == 0 and int(r_out) == 12

    store = Store.open(url, cache_dir=False)
    assert store.verify(full=True).problems == []
    tags = store.tags("shared")
    assert tags["latest"] in store.versions("shared")
    for w in range(4):  # each writer's tag names that writer's last version
        m = store.manifest(f"shared:writer{w}")
        assert m.metadata["source"].endswith(f"w{w}-2.bin")
    # 12 versions of 1 MiB share all but 12 chunks
    stats = store.stats("shared")["models"][0]
    assert stats["unique_bytes"] == (16 + 12) * 65536
