"""Run the timed core benchmarks and print the targets table.

    .venv/bin/python bench/report.py --size 1GiB --passes 3 --rounds 3 --rss-sizes 1GiB,4GiB

Each pass is one pytest run of bench/test_bench_core.py with timing on (``--benchmark-enable``),
so every baseline is measured in the same run, minutes at most from its subject; when timed, every
round of put (get) also runs its baseline right before it, so targets 1 and 3 are the median of
those per-round ratios, which keeps a noisy shared machine from favouring one side. Target 2 is
the median over passes of (median put-new time / median put-again time). For targets 1 and 3 the
report also prints the best ratio the machine allows in that run: the I/O-only floors
(test_put_io_only, test_get_io_only: the subject's I/O with the codec taken out) against the
baseline, by wall time and by CPU-seconds per core. The peak-RSS checks then run once
in fresh processes at each of --rss-sizes. Everything goes under a temporary directory in
--tmp (default: the system temp dir) that is deleted at the end, generated data included.

Exit status: 0 if every target passes, 1 if one fails, 2 if a benchmark itself failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from workload import MIB, format_size, parse_size  # noqa: E402

TIMED = ["test_compress_baseline", "test_put_io_only", "test_put_new", "test_put_again", "test_decompress_baseline",
         "test_get_io_only[direct]", "test_get_io_only[buffered]", "test_get"]


def run_pytest(args: list[str], env: dict, json_path: str) -> int:
    cmd = [sys.executable, "-m", "pytest", os.path.join(HERE, "test_bench_core.py"), "-q", "-p", "no:cacheprovider",
           "--benchmark-enable", f"--benchmark-json={json_path}", "--timeout=3600", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def load(json_path: str) -> dict:
    with open(json_path) as f:
        return {b["name"]: b for b in json.load(f)["benchmarks"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GiB", help="weights file size for the throughput benchmarks")
    ap.add_argument("--passes", type=int, default=3, help="pytest runs of the timed benchmarks")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per benchmark per pass")
    ap.add_argument("--rss-sizes", default="1GiB,4GiB", help="sizes for the peak-RSS checks ('' to skip)")
    ap.add_argument("--tmp", default=None, help="parent directory for stores and data (deleted afterwards)")
    ap.add_argument("--json", default=None, help="also write the aggregated results here")
    ap.add_argument("--chunk-hash", default=None, help="chunk keys of the stores the benchmarks create "
                    "(xxh3-128, the default, or blake3-256); bench/ab.py compares two side by side")
    opts = ap.parse_args(argv)

    size = parse_size(opts.size)
    work = tempfile.mkdtemp(prefix="cas-bench-report-", dir=opts.tmp)
    env = dict(os.environ, CAS_BENCH_SIZE=str(size), CAS_BENCH_ROUNDS=str(opts.rounds), CAS_BENCH_TMP=work,
               CAS_BENCH_DATA_DIR=os.path.join(work, "data"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("CAS_STORE", None)
    if opts.chunk_hash:
        env["CAS_BENCH_CHUNK_HASH"] = opts.chunk_hash
    failed_runs = 0
    passes = []
    rss = {}
    try:
        for i in range(opts.passes):
            path = os.path.join(work, f"pass{i}.json")
            failed_runs += run_pytest(["-k", "not rss"], env, path) != 0
            if os.path.exists(path):
                passes.append(load(path))
        if opts.rss_sizes.strip():
            path = os.path.join(work, "rss.json")
            rss_env = dict(env, CAS_BENCH_RSS_SIZES=opts.rss_sizes)
            failed_runs += run_pytest(["-k", "rss"], rss_env, path) != 0
            if os.path.exists(path):
                rss = load(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = summarise(passes, rss, size)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                          "date": datetime.date.today().isoformat(), "size": format_size(size),
                          "passes": len(passes), "rounds": opts.rounds, "chunk_hash": opts.chunk_hash or "xxh3-128"}
    print_table(results)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=2)
    if failed_runs:
        return 2
    return 0 if all(t["pass"] for t in results["targets"]) else 1


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def summarise(passes: list[dict], rss: dict, size: int) -> dict:
    times = {name: [] for name in TIMED}  # every round of every pass
    per_pass = {name: [] for name in TIMED}  # one median per pass
    for p in passes:
        for name in TIMED:
            if name in p:
                data = p[name]["stats"]["data"]
                times[name].extend(data)
                per_pass[name].append(statistics.median(data))

    def ratios(num: str, den: str) -> list[float]:
        return [a / b for a, b in zip(per_pass[num], per_pass[den])]

    rows = []
    for name in TIMED:
        med = _median(times[name])
        rows.append({"name": name, "median_s": med, "min_s": min(times[name], default=float("nan")),
                     "mb_s": size / MIB / med if med == med else float("nan"), "per_pass_s": per_pass[name]})

    def paired(subject: str) -> list[float]:
        """baseline / subject time for each round, the baseline run just before it (throughput ratio)."""
        out = []
        for p in passes:
            if subject in p:
                b = p[subject]
                out += [base / t for base, t in zip(b["extra_info"].get("paired_baseline_s", []), b["stats"]["data"])]
        return out

    put_paired, get_paired = paired("test_put_new"), paired("test_get")
    put_ratio = ratios("test_compress_baseline", "test_put_new")  # throughput put / compress = t_c / t_put
    again_speedup = ratios("test_put_new", "test_put_again")
    get_ratio = ratios("test_decompress_baseline", "test_get")
    targets = [
        {"target": "1 put new / compress-only throughput", "value": _median(put_paired), "per_round": put_paired,
         "per_pass": put_ratio, "limit": ">= 0.80", "pass": _median(put_paired) >= 0.8},
        {"target": "2 put again speed-up over put new", "value": _median(again_speedup), "per_pass": again_speedup,
         "limit": ">= 5", "pass": _median(again_speedup) >= 5},
        {"target": "3 get / decompress-only throughput", "value": _median(get_paired), "per_round": get_paired,
         "per_pass": get_ratio, "limit": ">= 0.80", "pass": _median(get_paired) >= 0.8},
    ]
    dedup = [p["test_second_version_dedup"]["extra_info"] for p in passes if "test_second_version_dedup" in p]
    if dedup:
        d = dedup[-1]
        targets.append({"target": "5 v2 (10% chunks changed) added / v1 stored bytes", "value": d["added_fraction"],
                        "limit": f"<= {d['limit']:.4f} ({d['changed_chunks']}/{d['chunks']} chunks changed + 0.02)",
                        "pass": d["added_fraction"] <= d["limit"], "detail": d})
    rss_rows = {}
    for op in ("put", "put_cdc", "get"):
        b = rss.get(f"test_peak_rss_{op}")
        if b:
            info = b["extra_info"]
            rss_rows[op] = info
            peaks = info["peak_rss"]
            flat = max(peaks.values()) - min(peaks.values())
            targets.append({"target": f"4 peak RSS of {op.replace('_', ' ')} ({', '.join(peaks)})",
                            "value": max(peaks.values()) / MIB, "limit": "< 300 MiB, growth < 32 MiB",
                            "pass": max(peaks.values()) < 300 * MIB and flat < 32 * MIB,
                            "detail": {k: v / MIB for k, v in peaks.items()}})
    bounds = {"1": io_bound(passes, "test_compress_baseline", ["test_put_io_only"], "test_put_new"),
              "3": io_bound(passes, "test_decompress_baseline", ["test_get_io_only[direct]", "test_get_io_only[buffered]"],
                            "test_get")}
    for t in targets:
        b = bounds.get(t["target"][0])
        if b and t["target"][:2] in ("1 ", "3 "):
            t["bound"] = b
    # get writes with O_DIRECT (Store's default): the buffered floor, faster in this harness, is not
    # reachable by a get in a fresh process on our VMs (bench/README.md "The bound"), so show both.
    own = io_bound(passes, "test_decompress_baseline", ["test_get_io_only[direct]"], "test_get")
    for t in targets:
        if own and t["target"].startswith("3 ") and t.get("bound", {}).get("io") != own["io"]:
            t["own_mode_bound"] = own
    for name in ("test_compress_baseline", "test_decompress_baseline"):  # one-shot reference rows
        oneshot = [t for p in passes if name in p for t in p[name]["extra_info"].get("oneshot_s", [])]
        if oneshot:
            med = _median(oneshot)
            rows.append({"name": name.replace("_baseline", "_oneshot"), "median_s": med, "min_s": min(oneshot),
                         "mb_s": size / MIB / med, "per_pass_s": []})
    stored = passes[-1].get("test_put_new", {}).get("extra_info", {}) if passes else {}
    return {"rows": rows, "targets": targets, "rss": rss_rows,
            "stored_fraction": stored.get("stored_bytes", 0) / size if stored else None}


def io_bound(passes: list[dict], baseline: str, io_names: list[str], subject: str) -> dict | None:
    """The best ratio this machine allows a target: the subject does the baseline's work and the
    I/O-only floor's, so it takes at least as long as either (wall bound) and needs the CPU-seconds
    of both spread over every core (CPU bound). Medians over all rounds; the faster I/O variant.

    Also the subject's CPU efficiency: (baseline CPU-s + floor CPU-s) / the subject's CPU-s. On a
    machine shared with other jobs the baseline gets only part of the cores, which inflates its wall
    time and so the bounds; CPU-seconds do not depend on what else runs, so this is the figure to
    read there (1.0: the subject spends nothing beyond its parts)."""

    def med(name: str, key: str | None = None) -> float:
        vals = [x for p in passes if name in p
                for x in (p[name]["extra_info"].get(key, []) if key else p[name]["stats"]["data"])]
        return _median(vals)

    present = [n for n in io_names if any(n in p for p in passes)]
    if not present or not any(baseline in p for p in passes):
        return None
    io = min(present, key=med)
    t_base, cpu_base, t_io, cpu_io = med(baseline), med(baseline, "cpu_s"), med(io), med(io, "cpu_s")
    cores = next(p[baseline]["extra_info"].get("cores", 1) for p in passes if baseline in p)
    wall = t_base / max(t_base, t_io)
    cpu = t_base * cores / (cpu_base + cpu_io)
    cpu_subject = med(subject, "cpu_s")
    return {"value": min(1.0, wall, cpu), "wall_bound": wall, "cpu_bound": cpu, "io": io, "io_s": t_io,
            "io_cpu_s": cpu_io, "base_s": t_base, "base_cpu_s": cpu_base, "cores": cores,
            "subject_cpu_s": cpu_subject, "cpu_efficiency": (cpu_base + cpu_io) / cpu_subject}


def print_table(r: dict) -> None:
    m = r["machine"]
    print()
    print(f"cas core benchmarks: {m['size']} float32 N(0,0.02) weights, {m['passes']} passes x {m['rounds']} rounds, "
          f"{m['cpus']} CPUs, Python {m['python']}, {m['date']}, {m.get('chunk_hash', 'xxh3-128')} chunk keys")
    if r["stored_fraction"]:
        print(f"stored/raw through put (default codec policy): {r['stored_fraction']:.3f}")
    print()
    print(f"{'benchmark':<28}{'median s':>10}{'min s':>10}{'MB/s':>10}   per-pass medians (s)")
    for row in r["rows"]:
        pp = " ".join(f"{x:.3f}" for x in row["per_pass_s"])
        print(f"{row['name']:<28}{row['median_s']:>10.3f}{row['min_s']:>10.3f}{row['mb_s']:>10.0f}   {pp}")
    if r["rss"]:
        print()
        print(f"{'peak RSS (fresh process)':<28}" + "".join(f"{k:>12}" for k in next(iter(r["rss"].values()))["peak_rss"]))
        for op, info in r["rss"].items():
            print(f"{op + ' peak MiB':<28}" + "".join(f"{v / MIB:>12.0f}" for v in info["peak_rss"].values()))
            print(f"{op + ' after imports MiB':<28}" + "".join(f"{v / MIB:>12.0f}" for v in info["ready_rss"].values()))
            print(f"{op + ' seconds':<28}" + "".join(f"{v:>12.2f}" for v in info["seconds"].values()))
    print()
    print(f"{'target':<52}{'value':>10}  {'limit':<36}result")
    for t in r["targets"]:
        print(f"{t['target']:<52}{t['value']:>10.3f}  {t['limit']:<38}{'PASS' if t['pass'] else 'FAIL'}")
    print()
    print("Ratios 1 and 3 are medians of per-round ratios: each timed round of put (get) ran right after one")
    print("run of its baseline. 'per pass' divides the two benchmarks' medians within one pytest run.")
    print("The baselines code into a reused buffer per thread; *_oneshot rows time cas.codec.encode/decode into fresh")
    print("buffers on the same data, for reference only (targets use the faster of the two kinds, the baseline).")
    for t in r["targets"]:
        for key in ("per_round", "per_pass"):
            if t.get(key):
                print(f"  {t['target'][:40]:<40} {key:<9}: {' '.join(f'{x:.2f}' for x in t[key])}")
    bounded = [t for t in r["targets"] if t.get("bound")]
    if bounded:
        print()
        print("Upper bounds from this run's I/O-only floors (a ratio above the bound is impossible here):")
        for t in bounded:
            b = t["bound"]
            print(f"  {t['target'][:40]:<40} bound {b['value']:.2f}: baseline {b['base_s']:.2f} s / {b['base_cpu_s']:.2f} "
                  f"CPU-s, {b['io']} {b['io_s']:.2f} s / {b['io_cpu_s']:.2f} CPU-s, {b['cores']} cores "
                  f"(wall bound {b['wall_bound']:.2f}, CPU bound {b['cpu_bound']:.2f})")
            print(f"  {'':<40} reached {t['value']:.2f} = {t['value'] / b['value']:.0%} of the bound; CPU efficiency "
                  f"{b['cpu_efficiency']:.0%} (its parts {b['base_cpu_s'] + b['io_cpu_s']:.2f} CPU-s, it used "
                  f"{b['subject_cpu_s']:.2f})")
            own = t.get("own_mode_bound")
            if own:
                print(f"  {'':<40} against the floor of get's own writes ({own['io']} {own['io_s']:.2f} s / "
                      f"{own['io_cpu_s']:.2f} CPU-s): bound {own['value']:.2f}, reached {t['value'] / own['value']:.0%}")


if __name__ == "__main__":
    sys.exit(main())
