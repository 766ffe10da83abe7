"""cas side by side with what users pick instead: HdfsCLI, restic, borgbackup and casync.

Every tool stores the same version series (bench/datasets.py) in order, each version into the same
repository, then restores every version into a fresh directory. For every operation it records the
wall time of the whole command (process start-up included, as a user sees it), the peak RSS of the
tool's process (``/usr/bin/time -f %M``; psutil polling of the process tree when GNU time is not
installed), and after every store the bytes the repository holds (apparent size of every file in the
repository directory, indexes and metadata included; for the HDFS-based tools the ``length`` of the
server's content summary of their directory). Every restore is checked byte for byte against its
source, outside the timed part.

Tools (all with their defaults unless said; this machine has 2 cores, so none gets more than 2 CPUs):

  hdfscli      HdfsCLI ``write`` of each whole file to the WebHDFS test server, ``read`` back; one stream
  cas-webhdfs  cas put/get to the same server (8 threads, the WebHDFS backend's default)
  cas-local    cas put/get to a local directory store (4 threads, the local backend's default)
  cas-local-1t the same with 1 thread (not run unless asked: ``--tools``)
  restic       restic backup (repository v2, ``--compression auto``) / restore; Go, uses both cores
  borg         borg create ``--compression zstd,3`` into a repository inited ``--encryption none`` /
               borg extract; single-threaded
  casync       casync make ``--compression=zstd`` into a local chunk store (.caibx for a file, .caidx
               for a directory) / casync extract; single-threaded

cas uses the chunk size the series names: 1 MiB for models (what ``cas.tensorflow.save_model`` uses),
the 4 MiB default for the synthetic series. The WebHDFS server runs in its own process with no network
emulation unless ``--bandwidth``/``--latency`` are given. Page cache is warm (the sources were just
written; nothing is dropped). Tool caches (restic's, borg's) live in the work directory and are not
counted as stored bytes.

    bash bench/setup-peers.sh                                    # apt-get install restic borgbackup casync time
    .venv/bin/python bench/datasets.py /tmp/ds --synthetic 1GiB --unfreeze 11
    .venv/bin/python bench/peers.py /tmp/ds --repeats 3 --out peers.jsonl        # runs, then prints the tables
    .venv/bin/python bench/peers.py /tmp/ds --report-only --out peers.jsonl      # tables from saved results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import files_equal  # noqa: E402
from datasets import load_series  # noqa: E402

INSTALL_HINT = "apt-get update && apt-get install -y restic borgbackup casync time   (or: bash bench/setup-peers.sh)"
GNU_TIME = "/usr/bin/time"
MODEL = "m"
HDFS_USER = "cas"
HDFS_ROOT = "/cas"
DEFAULT_TOOLS = ("hdfscli", "cas-webhdfs", "restic", "borg", "casync", "cas-local")
LOCAL_PEERS = ("restic", "borg", "casync")


# -- measuring one command ---------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    stdout: str
    stderr: str


def run_measured(cmd: list[str], *, cwd: str | None = None, env: dict | None = None, timeout: float = 3600) -> Run:
    """Run ``cmd`` to completion: wall time, peak RSS of the tool (bytes), its output. Raises on failure.

    Under GNU time the RSS is the tool's own ``ru_maxrss`` (``time`` forks a tiny process that execs
    the tool, so no big parent's peak is carried over); without it, the summed RSS of the process
    tree polled every 5 ms.
    """
    full_env = {**os.environ, **(env or {})}
    if os.access(GNU_TIME, os.X_OK):
        with tempfile.NamedTemporaryFile("r", prefix="peers-time-", suffix=".txt") as tf:
            t0 = time.perf_counter()
            proc = subprocess.run([GNU_TIME, "-f", "%M", "-o", tf.name, *cmd], cwd=cwd, env=full_env,
                                  capture_output=True, text=True, timeout=timeout)
            seconds = time.perf_counter() - t0
            lines = [line for line in open(tf.name).read().splitlines() if line.strip()]
        peak = int(lines[-1]) * 1024 if lines and lines[-1].strip().isdigit() else 0
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    else:
        out, err, rc, seconds, peak = _run_polled(cmd, cwd=cwd, env=full_env, timeout=timeout)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}):\n{err[-3000:]}")
    return Run(seconds, peak, out, err)


def _run_polled(cmd, *, cwd, env, timeout):
    import psutil

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        peak = 0
        try:
            ps = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
                if time.perf_counter() - t0 > timeout:
                    proc.kill()
                time.sleep(0.005)
        except psutil.NoSuchProcess:
            pass
        rc = proc.wait()
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return out.read(), err.read(), rc, seconds, peak


def tree_bytes(path: str) -> int:
    """Apparent size of a file, or of every file under a directory (``du -sb`` without directories)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names
               if not os.path.islink(os.path.join(d, n)))


def trees_equal(a: str, b: str) -> bool:
    """Same regular files with the same bytes (empty directories ignored: HdfsCLI writes none)."""
    if os.path.isfile(a) or os.path.isfile(b):
        return os.path.isfile(a) and os.path.isfile(b) and files_equal(a, b)

    def files(root):
        return sorted(os.path.relpath(os.path.join(d, n), root) for d, _, ns in os.walk(root) for n in ns)

    fa, fb = files(a), files(b)
    return fa == fb and all(files_equal(os.path.join(a, r), os.path.join(b, r)) for r in fa)


def find_restored(dest: str, name: str) -> str:
    """The restored item called ``name`` under ``dest`` (restic restores under the source's absolute path)."""
    direct = os.path.join(dest, name)
    if os.path.exists(direct):
        return direct
    for d, dirs, files in os.walk(dest):
        if name in files or name in dirs:
            return os.path.join(d, name)
    raise FileNotFoundError(f"{name} not restored under {dest}")


# -- the WebHDFS test server ----------------------------------------------------------------------------


class Server:
    """``python -m cas.testing.webhdfs_server`` in its own process (as a cluster would be)."""

    def __init__(self, data_dir: str, *, bandwidth: float | None = None, latency: float = 0.0) -> None:
        cmd = [sys.executable, "-m", "cas.testing.webhdfs_server", "--root", data_dir, "--store-root", HDFS_ROOT,
               "--user", HDFS_USER]
        if bandwidth:
            cmd += ["--bandwidth", str(bandwidth)]
        if latency:
            cmd += ["--latency", str(latency)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.namenode_url = self.proc.stdout.readline().split()[1]
        self.base_url = self.proc.stdout.readline().split()[1].split("?")[0]  # webhdfs://127.0.0.1:P/cas
        from hdfs import InsecureClient

        self.client = InsecureClient(self.namenode_url, user=HDFS_USER)

    def stored_bytes(self, hdfs_path: str) -> int:
        return int(self.client.content(hdfs_path, strict=False)["length"] if self.client.status(hdfs_path, strict=False)
                   else 0)

    def delete(self, hdfs_path: str) -> None:
        self.client.delete(hdfs_path, recursive=True)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# -- the tools ------------------------------------------------------------------------------------------

_CAS_CHILD = r"""
import sys
from cas import Store
op, url, local, ref, n_workers, chunk_size, chunker = sys.argv[1:8]
n = int(n_workers) or None
opts = {"max_workers": n} if n and url.startswith(("webhdfs://", "swebhdfs://")) else {}
with Store.open(url, cache_dir=False, n_workers=n, **opts) as store:
    if op == "put":
        store.put(local, ref, chunk_size=int(chunk_size), chunker=chunker)
    else:
        store.get(ref, local)
"""

_HDFSCLI_CHILD = r"""
import os, posixpath, shutil, sys
from hdfs import InsecureClient
op, namenode, user, local, remote = sys.argv[1:6]
client = InsecureClient(namenode, user=user)

def read(src, dst):
    with client.read(src) as reader, open(dst, "wb") as out:
        shutil.copyfileobj(reader, out, 8 << 20)

if op == "write":
    if os.path.isdir(local):
        for d, _, names in os.walk(local):
            for n in sorted(names):
                full = os.path.join(d, n)
                with open(full, "rb") as f:
                    rel = os.path.relpath(full, local).replace(os.sep, "/")
                    client.write(remote + "/" + rel, data=f, overwrite=True)
    else:
        with open(local, "rb") as f:
            client.write(remote, data=f, overwrite=True)
elif client.status(remote)["type"] == "DIRECTORY":
    for d, _, names in client.walk(remote):
        for n in names:
            dst = os.path.join(local, *posixpath.relpath(posixpath.join(d, n), remote).split("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            read(posixpath.join(d, n), dst)
else:
    read(remote, local)
"""


class Tool:
    """One tool storing one series into one repository under ``work``."""

    name = "?"
    binary: str | None = None
    threads = "?"

    def __init__(self, work: str, *, server: Server | None = None, chunk_size: int = 1 << 20) -> None:
        self.work = work
        self.server = server
        self.chunk_size = chunk_size
        os.makedirs(work, exist_ok=True)

    @classmethod
    def available(cls) -> bool:
        return cls.binary is None or shutil.which(cls.binary) is not None

    def version(self) -> str:
        return ""

    def setup(self) -> None:
        pass

    def store(self, k: int, path: str) -> Run:
        raise NotImplementedError

    def restore(self, k: int, name: str, dest: str) -> tuple[Run, str]:
        """Restore version k into the empty directory ``dest``; (run, path of the restored item)."""
        raise NotImplementedError

    def stored_bytes(self) -> int:
        raise NotImplementedError

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


class CasLocal(Tool):
    name, threads = "cas-local", "4 (local backend default)"
    n_workers = 0
    chunker = "auto"  # the default
    cdc_avg = 1 << 20

    def version(self):
        import cas

        return f"cas {cas.__version__}"

    def _run(self, op, local, ref):
        size = self.cdc_avg if self.chunker == "cdc" else self.chunk_size
        return run_measured([sys.executable, "-c", _CAS_CHILD, op, self.url(), local, ref, str(self.n_workers),
                             str(size), self.chunker])

    def url(self) -> str:
        return os.path.join(self.work, "store")

    def store(self, k, path):
        return self._run("put", path, MODEL)

    def restore(self, k, name, dest):
        out = os.path.join(dest, name)
        return self._run("get", out, f"{MODEL}@{k}"), out

    def stored_bytes(self):
        return tree_bytes(self.url())


class CasLocal1(CasLocal):
    name, threads, n_workers = "cas-local-1t", "1", 1


class CasLocalCdc(CasLocal):
    """``--chunker cdc`` (FastCDC, 1 MiB average), for the opaque files ``auto`` cuts fixed."""

    name, chunker = "cas-local-cdc", "cdc"


class CasWebhdfs(CasLocal):
    name, threads = "cas-webhdfs", "8 (WebHDFS backend default)"

    def __init__(self, work, **kw):
        super().__init__(work, **kw)
        self.sub = f"cas-{uuid.uuid4().hex[:8]}"

    def url(self):
        return f"{self.server.base_url}/{self.sub}?user={HDFS_USER}"

    def stored_bytes(self):
        return self.server.stored_bytes(f"{HDFS_ROOT}/{self.sub}")

    def cleanup(self):
        self.server.delete(f"{HDFS_ROOT}/{self.sub}")
        super().cleanup()


class HdfsCli(Tool):
    name, threads = "hdfscli", "1 stream (write/read of whole files)"

    def __init__(self, work, **kw):
        super().__init__(work, **kw)
        self.sub = f"hdfscli-{uuid.uuid4().hex[:8]}"

    def version(self):
        import hdfs

        return f"hdfs (HdfsCLI) {hdfs.__version__}"

    def _run(self, op, local, remote):
        return run_measured([sys.executable, "-c", _HDFSCLI_CHILD, op, self.server.namenode_url, HDFS_USER, local,
                             remote])

    def store(self, k, path):
        return self._run("write", path, f"{HDFS_ROOT}/{self.sub}/v{k}/{os.path.basename(path)}")

    def restore(self, k, name, dest):
        out = os.path.join(dest, name)
        return self._run("read", out, f"{HDFS_ROOT}/{self.sub}/v{k}/{name}"), out

    def stored_bytes(self):
        return self.server.stored_bytes(f"{HDFS_ROOT}/{self.sub}")

    def cleanup(self):
        self.server.delete(f"{HDFS_ROOT}/{self.sub}")
        super().cleanup()


class Restic(Tool):
    name, binary, threads = "restic", "restic", "Go runtime on both cores (0.14 has no reader/worker knobs)"

    def __init__(self, work, **kw):
        super().__init__(work, **kw)
        self.repo = os.path.join(work, "repo")
        self.env = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": self.repo,
                    "RESTIC_CACHE_DIR": os.path.join(work, "cache")}
        self.snapshots: dict[int, str] = {}

    def version(self):
        return subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split(" compiled")[0]

    def _compression(self) -> list[str]:
        text = subprocess.run(["restic", "backup", "--help"], capture_output=True, text=True).stdout
        return ["--compression", "auto"] if "--compression" in text else []

    def setup(self):
        text = subprocess.run(["restic", "init", "--help"], capture_output=True, text=True).stdout
        v2 = ["--repository-version", "2"] if "--repository-version" in text else []
        run_measured(["restic", "init", *v2], env=self.env)
        self.compression = self._compression()

    def store(self, k, path):
        r = run_measured(["restic", "backup", "--json", "--host", "bench", *self.compression, os.path.basename(path)],
                         cwd=os.path.dirname(path), env=self.env)
        for line in r.stdout.splitlines():
            if '"summary"' in line:
                self.snapshots[k] = json.loads(line)["snapshot_id"]
        return r

    def restore(self, k, name, dest):
        r = run_measured(["restic", "restore", self.snapshots[k], "--target", dest], env=self.env)
        return r, find_restored(dest, name)

    def stored_bytes(self):
        return tree_bytes(self.repo)


class Borg(Tool):
    name, binary, threads = "borg", "borg", "1 (borg 1.x is single-threaded)"

    def __init__(self, work, **kw):
        super().__init__(work, **kw)
        self.repo = os.path.join(work, "repo")
        self.env = {"BORG_BASE_DIR": os.path.join(work, "home"), "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}

    def version(self):
        return subprocess.run(["borg", "--version"], capture_output=True, text=True).stdout.strip()

    def setup(self):
        run_measured(["borg", "init", "--encryption", "none", self.repo], env=self.env)

    def store(self, k, path):
        return run_measured(["borg", "create", "--compression", "zstd,3", f"{self.repo}::v{k}", os.path.basename(path)],
                            cwd=os.path.dirname(path), env=self.env)

    def restore(self, k, name, dest):
        return run_measured(["borg", "extract", f"{self.repo}::v{k}"], cwd=dest, env=self.env), os.path.join(dest, name)

    def stored_bytes(self):
        return tree_bytes(self.repo)


class Casync(Tool):
    name, binary, threads = "casync", "casync", "1 (casync is single-threaded)"

    def __init__(self, work, **kw):
        super().__init__(work, **kw)
        self.repo = os.path.join(work, "repo")  # the chunk store (.castr) and the indexes
        self.indexes: dict[int, str] = {}

    def version(self):
        return subprocess.run(["casync", "--version"], capture_output=True, text=True).stdout.strip()

    def setup(self):
        os.makedirs(os.path.join(self.repo, "indexes"), exist_ok=True)

    def store(self, k, path):
        index = os.path.join(self.repo, "indexes", f"v{k}.{'caidx' if os.path.isdir(path) else 'caibx'}")
        self.indexes[k] = index
        return run_measured(["casync", "make", f"--store={self.repo}/default.castr", "--compression=zstd", index, path])

    def restore(self, k, name, dest):
        out = os.path.join(dest, name)
        return run_measured(["casync", "extract", f"--store={self.repo}/default.castr", self.indexes[k], out]), out

    def stored_bytes(self):
        return tree_bytes(self.repo)


TOOLS = {t.name: t for t in (HdfsCli, CasWebhdfs, Restic, Borg, Casync, CasLocal, CasLocal1, CasLocalCdc)}


def check_tools(names) -> list[str]:
    """The tools in ``names`` whose program is not installed."""
    return [n for n in names if not TOOLS[n].available()]


# -- one tool, one series -------------------------------------------------------------------------------


def measure_series(tool: Tool, series: dict, *, verify: bool = True, log=print) -> list[dict]:
    """Store every version in order, then restore each into a fresh directory; one row per operation."""
    rows = []
    base = {"series": series["name"], "tool": tool.name}
    tool.setup()
    for v in series["versions"]:
        r = tool.store(v["version"], v["path"])
        rows.append({**base, "op": "store", "version": v["version"], "seconds": r.seconds, "peak_rss": r.peak_rss,
                     "stored_bytes": tool.stored_bytes(), "source_bytes": v["bytes"]})
    for v in series["versions"]:
        dest = os.path.join(tool.work, f"restore-v{v['version']}")
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        name = os.path.basename(v["path"])
        r, out = tool.restore(v["version"], name, dest)
        ok = trees_equal(v["path"], out) if verify else None
        shutil.rmtree(dest, ignore_errors=True)
        if ok is False:
            raise RuntimeError(f"{tool.name} restored {series['name']} v{v['version']} with different bytes")
        rows.append({**base, "op": "restore", "version": v["version"], "seconds": r.seconds, "peak_rss": r.peak_rss,
                     "verified": ok})
    log(f"  {tool.name:13s} store " + " ".join(f"{x['seconds']:.2f}" for x in rows if x["op"] == "store")
        + " s | restore " + " ".join(f"{x['seconds']:.2f}" for x in rows if x["op"] == "restore")
        + f" s | stored {rows[len(series['versions']) - 1]['stored_bytes'] / 1e6:.1f} MB")
    return rows


def machine_info() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = 0
    try:
        mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) * 1024
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_bytes": mem, "python": platform.python_version(),
            "kernel": platform.release(), "load_avg": os.getloadavg()}


def run(data_dir: str, out: str, *, tools=DEFAULT_TOOLS, series_names=None, repeats: int = 1,
        work: str | None = None, bandwidth: float | None = None, latency: float = 0.0, log=print) -> list[dict]:
    """Measure every tool on every series, ``repeats`` times (tool order rotated each repeat); rows are
    appended to the JSON-lines file ``out`` as they are measured and returned."""
    all_series = load_series(data_dir)
    series = [s for s in all_series if not series_names or s["name"] in series_names]
    missing = check_tools(tools)
    if missing:
        log(f"skipping {', '.join(missing)}: not installed. Install with: {INSTALL_HINT}")
    tools = [t for t in tools if t not in missing]
    work = tempfile.mkdtemp(prefix="cas-peers-", dir=work)
    rows: list[dict] = []
    try:
        with Server(os.path.join(work, "hdfs-data"), bandwidth=bandwidth, latency=latency) as server, \
                open(out, "a") as sink:
            header = {"header": True, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(),
                      "tools": {t: {"version": TOOLS[t](os.path.join(work, "probe")).version(),
                                    "threads": TOOLS[t].threads} for t in tools},
                      "bandwidth": bandwidth, "latency": latency, "repeats": repeats}
            sink.write(json.dumps(header) + "\n")
            for repeat in range(repeats):
                order = tools[repeat % len(tools):] + tools[:repeat % len(tools)]
                for s in series:
                    log(f"repeat {repeat + 1}/{repeats}, {s['name']} (load {os.getloadavg()[0]:.1f})")
                    for name in order:
                        tool = TOOLS[name](os.path.join(work, f"{name}-{s['name']}-{repeat}"), server=server,
                                           chunk_size=s["cas_chunk_size"])
                        try:
                            got = measure_series(tool, s, log=log)
                        finally:
                            tool.cleanup()
                        for row in got:
                            row.update(repeat=repeat, load_avg=os.getloadavg()[0])
                            sink.write(json.dumps(row) + "\n")
                        sink.flush()
                        rows += got
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


# -- the tables ----------------------------------------------------------------------------------------


def read_rows(path: str) -> tuple[list[dict], list[dict]]:
    headers, rows = [], []
    with open(path) as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                (headers if item.get("header") else rows).append(item)
    return headers, rows


def _median(rows, key, **match):
    vals = [r[key] for r in rows if all(r.get(k) == v for k, v in match.items())]
    return statistics.median(vals) if vals else None


def summarize(rows: list[dict]) -> dict:
    """{series: {tool: {"store": [s per version], "restore": [...], "stored": [bytes after each version],
    "rss_store": bytes, "rss_restore": bytes, "repeats": n}}}: medians over repeats."""
    out: dict = {}
    for series in dict.fromkeys(r["series"] for r in rows):
        srows = [r for r in rows if r["series"] == series]
        versions = sorted({r["version"] for r in srows})
        out[series] = {}
        for tool in dict.fromkeys(r["tool"] for r in srows):
            trows = [r for r in srows if r["tool"] == tool]
            per_repeat_peak = {}
            for op in ("store", "restore"):
                for rep in {r["repeat"] for r in trows}:
                    peak = max(r["peak_rss"] for r in trows if r["op"] == op and r["repeat"] == rep)
                    per_repeat_peak.setdefault(op, []).append(peak)
            out[series][tool] = {
                "store": [_median(trows, "seconds", op="store", version=v) for v in versions],
                "restore": [_median(trows, "seconds", op="restore", version=v) for v in versions],
                "stored": [_median(trows, "stored_bytes", op="store", version=v) for v in versions],
                "source": [_median(trows, "source_bytes", op="store", version=v) for v in versions],
                "rss_store": statistics.median(per_repeat_peak["store"]),
                "rss_restore": statistics.median(per_repeat_peak["restore"]),
                "repeats": len({r["repeat"] for r in trows}),
            }
    return out


def _fmt_seconds(values) -> str:
    return " / ".join("–" if v is None else f"{v:.2f}" for v in values)


def series_table(name: str, tools: dict) -> str:
    first = next(iter(tools.values()))
    sizes = " / ".join(f"{b / 1e6:.1f}" for b in first["source"])
    n = len(first["store"])
    vs = "/".join(f"v{i + 1}" for i in range(n))
    lines = [f"**{name}** (version sizes {sizes} MB; medians of {max(t['repeats'] for t in tools.values())} runs)", "",
             f"| tool | store s ({vs}) | restore s ({vs}) | stored MB after {vs} | added by v2..v{n}, % of source "
             f"| peak RSS MiB store / restore |",
             "|---|---|---|---|---|---|"]
    for tool, t in tools.items():
        stored = " / ".join(f"{b / 1e6:.1f}" for b in t["stored"])
        added = " / ".join(f"{(t['stored'][i] - t['stored'][i - 1]) / t['source'][i] * 100:.1f}" for i in range(1, n))
        lines.append(f"| {tool} | {_fmt_seconds(t['store'])} | {_fmt_seconds(t['restore'])} | {stored} | {added} "
                     f"| {t['rss_store'] / 2**20:.0f} / {t['rss_restore'] / 2**20:.0f} |")
    return "\n".join(lines)


def comparison_table(summary: dict) -> str:
    """Per series: cas against each peer on the same footing (cas-local vs the local tools, cas-webhdfs
    vs HdfsCLI). Ratios > 1 mean cas is faster / stores less."""
    lines = ["| series | cas vs | store: peer s / cas s (all versions) | restore: peer s / cas s | "
             "bytes stored: cas / peer (after last) | peak RSS cas / peer (store, restore) |",
             "|---|---|---:|---:|---:|---|"]
    for series, tools in summary.items():
        for peer in ("hdfscli", *LOCAL_PEERS):
            cas_name = "cas-webhdfs" if peer == "hdfscli" else "cas-local"
            if peer not in tools or cas_name not in tools:
                continue
            c, p = tools[cas_name], tools[peer]
            lines.append(
                f"| {series} | {peer} ({cas_name}) | {sum(p['store']):.2f} / {sum(c['store']):.2f} = "
                f"**{sum(p['store']) / sum(c['store']):.2f}x** | {sum(p['restore']):.2f} / {sum(c['restore']):.2f} = "
                f"**{sum(p['restore']) / sum(c['restore']):.2f}x** | {c['stored'][-1] / 1e6:.1f} / "
                f"{p['stored'][-1] / 1e6:.1f} MB = **{c['stored'][-1] / p['stored'][-1]:.2f}** | "
                f"{c['rss_store'] / 2**20:.0f}/{p['rss_store'] / 2**20:.0f}, "
                f"{c['rss_restore'] / 2**20:.0f}/{p['rss_restore'] / 2**20:.0f} MiB |")
    return "\n".join(lines)


def report(path: str) -> str:
    headers, rows = read_rows(path)
    summary = summarize(rows)
    parts = []
    if headers:
        h = headers[-1]
        m = h["machine"]
        parts.append(f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['mem_bytes'] / 2**30:.0f} GiB RAM, Python "
                     f"{m['python']}, kernel {m['kernel']}; load average at start {m['load_avg'][0]:.1f}. "
                     f"Network emulation: " + (f"{h['bandwidth']:.0f} B/s per connection, {h['latency']} s latency"
                                               if h.get("bandwidth") or h.get("latency") else "off") + ".")
        parts.append("Tools: " + "; ".join(f"{n}: {t['version'] or n}, threads: {t['threads']}"
                                           for n, t in h["tools"].items()) + ".")
    for series, tools in summary.items():
        parts.append(series_table(series, tools))
    parts.append(comparison_table(summary))
    return "\n\n".join(parts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", help="a directory made by bench/datasets.py")
    p.add_argument("--out", default="peers.jsonl", help="results, one JSON line per operation (appended)")
    p.add_argument("--tools", default=",".join(DEFAULT_TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}")
    p.add_argument("--series", default="", help="comma-separated series names (default: all in series.json)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--work", default=None, help="parent of the repositories (default: the system temp dir)")
    p.add_argument("--bandwidth", type=float, default=None, help="server bytes/s per connection (default: off)")
    p.add_argument("--latency", type=float, default=0.0, help="server seconds per request (default 0)")
    p.add_argument("--report-only", action="store_true", help="print the tables of --out; measure nothing")
    a = p.parse_args(argv)
    if not a.report_only:
        tools = [t for t in a.tools.split(",") if t]
        unknown = [t for t in tools if t not in TOOLS]
        if unknown:
            p.error(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
        run(a.data_dir, a.out, tools=tools, series_names=[s for s in a.series.split(",") if s], repeats=a.repeats,
            work=a.work, bandwidth=a.bandwidth, latency=a.latency)
    print(report(a.out))


if __name__ == "__main__":
    main()
