#!/usr/bin/env python3
"""Dedup statistics: what storing model versions would cost, and what stored versions share.

    python tools/dedup_stats.py local V1 V2 V3 [--chunker auto --chunker cdc] [--chunk-size 256KiB --chunk-size 4MiB]
                                  [--json] [--chart out.png]
    python tools/dedup_stats.py store [--store URL] MODEL [--version V ...] [--json] [--chart out.png]

``local`` reads files or directories (versions of one model, oldest first) and reports, for each
chunker and chunk size, the logical, unique and stored bytes (cut as a put with that chunker cuts
them, so the figures are what such a put stores, to the byte, packs included: ``--pack-below``),
objects (chunk objects and packs) per 100 MB stored, what each version adds after the earlier ones,
and which files and byte regions are new or shared. ``store`` reports the same for the stored
versions of a model, plus a version x version matrix of shared bytes and where the stored bytes go.
The analysis lives in cas.dedup; this script parses, calls it and prints. ``--chart`` needs
matplotlib (``pip install 'cas[charts]'``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys

from cas import Store
from cas.chunking import CHUNKERS, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNKER
from cas.cli import chunk_size_arg, describe_error, level_arg, pack_below_arg
from cas.codec import DEFAULT_LEVEL, DEFAULT_POLICY, POLICIES
from cas.dedup import NEW, analyze_local, analyze_store, default_workers, largest_regions
from cas.errors import CasError
from cas.packing import DEFAULT_PACK_BELOW
from cas.sizes import human_bytes
from cas.store import default_store_url

PROG = "dedup_stats"
EXIT_ERROR = 1
DEFAULT_CHUNK_SIZES = (256 * 1024, 1 << 20, DEFAULT_CHUNK_SIZE)
DEFAULT_TOP = 10
MATRIX_MAX_VERSIONS = 12  # the terminal matrix shows at most this many (the latest); --json has all


def parse_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"sample must be a fraction in (0, 1], e.g. 0.1; got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="What storing model versions costs, and what they share.")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="mode", required=True, metavar="MODE")

    def common(c: argparse.ArgumentParser) -> None:
        c.add_argument("--json", action="store_true", help="print the full report (every region) as JSON")
        c.add_argument("--chart", metavar="PNG", help="also draw a chart to this PNG file (needs matplotlib)")
        c.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N",
                       help=f"files and regions to list per section (default {DEFAULT_TOP})")
        c.add_argument("--workers", type=int, metavar="N", help="threads for hashing, compressing or reading")

    c = sub.add_parser("local", help="local files or directories, before anything is uploaded")
    c.add_argument("paths", nargs="+", metavar="VERSION", help="a file or directory per version, oldest first")
    c.add_argument("--chunk-size", type=chunk_size_arg, action="append", metavar="SIZE",
                   help="chunk size to evaluate, e.g. 256KiB; repeat for several "
                        f"(default {', '.join(_tick(s) for s in DEFAULT_CHUNK_SIZES)})")
    c.add_argument("--chunker", choices=CHUNKERS, action="append", metavar="CHUNKER",
                   help=f"chunker to evaluate ({', '.join(CHUNKERS)}); repeat for several (default {DEFAULT_CHUNKER}); "
                        "with cdc the chunk size is the average")
    c.add_argument("--sample", type=parse_fraction, default=1.0, metavar="FRACTION",
                   help="compress only this fraction of unique chunks and estimate the rest (default 1: all)")
    c.add_argument("--level", type=level_arg, default=DEFAULT_LEVEL, help=f"zstd level 1-22 (default {DEFAULT_LEVEL})")
    c.add_argument("--codec", choices=POLICIES, default=DEFAULT_POLICY,
                   help=f"codec policy as for `cas put --codec` (default {DEFAULT_POLICY})")
    c.add_argument("--pack-below", type=pack_below_arg, default=DEFAULT_PACK_BELOW, metavar="SIZE",
                   help="as for `cas put --pack-below`: chunks shorter than this go in packs (default 1MiB; 0: none)")
    common(c)

    c = sub.add_parser("store", help="the stored versions of one model")
    c.add_argument("model")
    c.add_argument("--store", metavar="URL", help=f"store path or URL (default: $CAS_STORE or {default_store_url()})")
    c.add_argument("--version", dest="versions", action="append", metavar="V",
                   help="analyse only this version; repeat for several (default: all)")
    common(c)
    return p


# -- text ------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list, right: set[int] | None = None) -> list[str]:
    """Plain aligned columns; ``right`` holds the indices of right-aligned columns (numbers).

    A row that is a string is a note: printed as it is, and not counted in the column widths.
    """
    right = set(range(1, len(headers))) if right is None else right
    cells = [r if isinstance(r, str) else [str(c) for c in r] for r in [headers, *rows]]
    widths = [max((len(r[i]) for r in cells if not isinstance(r, str)), default=0) for i in range(len(headers))]
    out = []
    for r in cells:
        if isinstance(r, str):
            out.append(r)
            continue
        out.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return out


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def files_section(report: dict, top: int, heading: str) -> list[str]:
    lines = [heading]
    rows = []
    for v in report["versions"]:
        listed = [f for f in v["file_detail"] if not f["same_as"]]
        listed.sort(key=lambda f: (-f["new_raw_bytes"], f["path"]))
        identical = len(v["file_detail"]) - len(listed)
        first = True
        for f in listed[:top]:
            rows.append([v["version"] if first else "", f["path"], human_bytes(f["size"]), human_bytes(f["new_raw_bytes"]),
                         human_bytes(f["shared_raw_bytes"]), human_bytes(f["repeated_raw_bytes"]),
                         pct(f["new_raw_bytes"], f["size"])])
            first = False
        rest = len(listed) - len(listed[:top])
        notes = []
        if rest:
            notes.append(f"{rest} more changed files ({human_bytes(sum(f['new_raw_bytes'] for f in listed[top:]))} new)")
        if identical:
            same = [f for f in v["file_detail"] if f["same_as"]]
            shown = ", ".join(f"{f['path']} = {f['same_as']}" for f in same[:3])
            notes.append(f"{identical} identical to an earlier file ({shown}{', ...' if identical > 3 else ''})")
        column = max(len("version"), *(len(r["version"]) for r in report["versions"]))
        for note in notes:
            rows.append(f"{v['version'] if first else '':{column}}  + {note}")
            first = False
    lines += ["  " + line for line in table(["version", "file", "size", "new", "shared", "repeated", "new %"], rows,
                                             right={2, 3, 4, 5, 6})]
    return lines


def regions_section(report: dict, top: int, heading: str) -> list[str]:
    regions = largest_regions(report, status=NEW, top=top)
    if not regions:
        return [heading, "  (none: every later version is made of chunks seen before)"]
    rows = [[r["version"], r["path"], r["offset"], r["offset"] + r["length"], human_bytes(r["length"]), r["chunks"]]
            for r in regions]
    return [heading] + ["  " + line for line in table(["version", "file", "from byte", "to byte", "length", "chunks"],
                                                     rows, right={2, 3, 4, 5})]


def stored_note(report: dict) -> str:
    s = report["stored"]
    if "sampled_chunks" not in s:
        return "stored bytes read from the store"
    how = f"codec {s['codec']}, zstd level {s['level']}"
    if not s["estimated"]:
        return f"stored bytes measured by encoding every unique chunk as put would ({how})"
    return (f"stored bytes ESTIMATED: encoded as put would ({how}) on a {s['sample_fraction']:.0%} sample of the "
            f"unique chunks (column 'compressed'), the sample's ratio applied to the rest")


def codecs_line(codecs: dict, what: str) -> str:
    """One line: chunks, raw and stored bytes per codec."""
    parts = [f"{name} {row['chunks']} chunks, {human_bytes(row['raw_bytes'])} -> {human_bytes(row['stored_bytes'])}"
             for name, row in codecs.items()]
    return f"{what}: " + ("; ".join(parts) if parts else "none")


def _cut_label(report: dict) -> str:
    """A local report's chunker and chunk size, e.g. 'auto 4.0 MiB' or 'cdc avg 1.0 MiB'."""
    size = human_bytes(report["chunk_size"])
    return f"cdc avg {size}" if report["chunker"] == "cdc" else f"{report['chunker']} {size}"


def render_local(result: dict, top: int) -> str:
    reports = result["reports"]
    n_versions = len(result["inputs"])
    notes = sorted({stored_note(r) for r in reports})
    lines = [f"{n_versions} versions, {len(reports)} chunkers and chunk sizes; " + "; ".join(notes), ""]

    lines.append("Bytes each version adds after the earlier ones")
    rows = []
    for r in reports:
        for i, v in enumerate(r["versions"]):
            rows.append([_cut_label(r) if i == 0 else "", v["version"], v["files"],
                         human_bytes(v["logical_bytes"]), human_bytes(v["new_raw_bytes"]),
                         human_bytes(v["new_stored_bytes"]), pct(v["new_raw_bytes"], v["logical_bytes"]),
                         pct(v["shared_raw_bytes"], v["logical_bytes"]), pct(v["repeated_raw_bytes"], v["logical_bytes"]),
                         human_bytes(v["manifest_bytes"])])
    lines += ["  " + line for line in table(["chunker", "version", "files", "logical", "new raw", "new stored",
                                              "new %", "shared %", "repeated %", "manifest"], rows, right=set(range(2, 10)))]
    lines.append("")
    lines.append("Totals per chunker (stored + manifests is what the store would hold)")
    rows = [[_cut_label(r), human_bytes(r["logical_bytes"]), human_bytes(r["unique_bytes"]),
             human_bytes(r["stored_bytes"]), human_bytes(r["manifest_bytes"]),
             human_bytes(r["stored_bytes"] + r["manifest_bytes"]), ratio(r["dedup_ratio"]), ratio(r["compression_ratio"]),
             r["unique_chunks"], f"{r['objects']} ({r['packs']} packs)", r["objects_per_100mb"],
             f"{r['stored']['sampled_chunks']} chunks"] for r in reports]
    lines += ["  " + line for line in table(["chunker", "logical", "unique", "stored", "manifests",
                                              "stored + manifests", "dedup", "compression", "unique chunks",
                                              "objects", "objects / 100 MB", "compressed"], rows)]
    lines += ["  " + codecs_line(r["stored"]["codecs"], f"codecs, {_cut_label(r)} (encoded chunks)") for r in reports]
    finest = min(reports, key=lambda r: r["stored_bytes"] + r["manifest_bytes"])
    size = _cut_label(finest)
    lines.append("")
    lines += files_section(finest, top, f"Files: new, shared with earlier versions, repeated within the version "
                                        f"({size}, the smallest store; every chunker in --json)")
    lines.append("")
    lines += regions_section(finest, top, f"Largest new regions after the first version ({size}, top {top}; "
                                          "every region in --json)")
    return "\n".join(lines)


def render_store(report: dict, top: int) -> str:
    sizes = ", ".join(human_bytes(s) for s in report["chunk_sizes"])
    lines = [f"model {report['model']} in {report['store']}: {report['versions_analysed']} versions, chunk size {sizes}; "
             f"{stored_note(report)}",
             f"logical {human_bytes(report['logical_bytes'])}, unique {human_bytes(report['unique_bytes'])}, "
             f"stored {human_bytes(report['stored_bytes'])}, manifests {human_bytes(report['manifest_bytes'])}, "
             f"dedup {ratio(report['dedup_ratio'])}, compression {ratio(report['compression_ratio'])}, "
             f"{report['objects_per_100mb']} objects per 100 MB"]
    lines.append(codecs_line(report["stored"]["codecs"], "codecs (distinct stored chunks)"))
    if report["missing_chunks"]:
        lines.append(f"WARNING: {report['missing_chunks']} chunks are missing from the store; run `cas verify`")
    lines.append("")
    lines.append("Where stored bytes go, per version (new: first brought by it; exclusive: no other version "
                 "of this model references it)")
    rows = []
    for v in report["versions"]:
        created = datetime.datetime.fromtimestamp(v["created"]).strftime("%Y-%m-%d %H:%M") if v["created"] else "-"
        rows.append([v["version"], created, human_bytes(v["logical_bytes"]), human_bytes(v["new_raw_bytes"]),
                     human_bytes(v["new_stored_bytes"]), human_bytes(v["exclusive_stored_bytes"]),
                     human_bytes(v["shared_stored_bytes"]), human_bytes(v["referenced_stored_bytes"]), v["chunker"]])
    lines += ["  " + line for line in table(["version", "created", "logical", "new raw", "new stored", "exclusive stored",
                                              "shared stored", "referenced stored", "chunker"], rows,
                                             right=set(range(2, 8)))]
    lines.append("")
    m = report["shared_raw_bytes"]
    labels, matrix = m["versions"], m["matrix"]
    keep = range(max(0, len(labels) - MATRIX_MAX_VERSIONS), len(labels))
    shown = f"the latest {len(keep)} of {len(labels)} versions; " if len(keep) < len(labels) else ""
    lines.append(f"Shared raw bytes: row version's distinct bytes also in the column version, % of the row's "
                 f"({shown}the diagonal is the version's distinct bytes)")
    rows = []
    for i in keep:
        row = [labels[i]]
        for j in keep:
            cell = human_bytes(matrix[i][j])
            row.append(cell if i == j else f"{cell} ({pct(matrix[i][j], matrix[i][i])})")
        rows.append(row)
    lines += ["  " + line for line in table([""] + [labels[j] for j in keep], rows)]
    lines.append("")
    lines.append(f"Where stored bytes go, by file path (a chunk counts for the version and file that first brought it; "
                 f"top {top})")
    files = report["files"]
    rows = [[f["path"], f["versions"], human_bytes(f["logical_bytes"]), human_bytes(f["new_raw_bytes"]),
             human_bytes(f["new_stored_bytes"]), pct(f["new_stored_bytes"], report["stored_bytes"])] for f in files[:top]]
    if len(files) > top:
        rest = files[top:]
        rows.append([f"+ {len(rest)} more paths", "", "", human_bytes(sum(f["new_raw_bytes"] for f in rest)),
                     human_bytes(sum(f["new_stored_bytes"] for f in rest)),
                     pct(sum(f["new_stored_bytes"] for f in rest), report["stored_bytes"])])
    lines += ["  " + line for line in table(["path", "versions", "logical", "new raw", "new stored", "% of stored"], rows)]
    lines.append("")
    lines += files_section(report, top, "Files: new, shared with earlier versions, repeated within the version")
    lines.append("")
    lines += regions_section(report, top, f"Largest new regions after the first version (top {top}; every region in --json)")
    return "\n".join(lines)


# -- charts ----------------------------------------------------------------------------------------


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise CasError("--chart needs matplotlib: pip install 'cas[charts]' (or leave out --chart)") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1):]


def _byte_axis(ax, values: list[float]) -> bool:
    """Pick the scale: log when the bars span more than 20x (a first version dwarfs the rest)."""
    positive = [v for v in values if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 20
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    return log


def _tick(v: float) -> str:
    return human_bytes(v).replace(".0 ", " ")


def _byte_ticks(ax, log: bool) -> None:
    """Ticks at round binary sizes (64 KiB, 1 MiB, 1.5 MiB...); call once the bars are drawn."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator
    if log:
        ax.yaxis.set_major_locator(LogLocator(base=4))
    else:
        low, high = ax.get_ylim()
        unit = 1024 ** max(0, min(4, int(math.log(max(high, 1), 1024))))
        ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(low / unit, high / unit)
        ax.yaxis.set_major_locator(FixedLocator([t * unit for t in ticks if t >= 0]))
        ax.set_ylim(low, high)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick(v)))


def _grouped_bars(ax, labels: list[str], series: list[tuple[str, list[int]]], *, xlabel: str, ylabel: str,
                  title: str) -> None:
    """One group of bars per version, one bar per series, each labelled with its size.

    A log axis is used when the bars span more than 20x; it cannot draw 0, so a zero bar is left
    out and only its "0 B" label is written, at the bottom.
    """
    values = [h for _, heights in series for h in heights]
    log = _byte_axis(ax, values)
    width = 0.8 / len(series)
    groups = []
    for k, (name, heights) in enumerate(series):
        x = [i - 0.4 + width * (k + 0.5) for i in range(len(labels))]
        ax.bar(x, [h if h > 0 or not log else float("nan") for h in heights], width, label=name)
        groups.append((x, heights))
    ax.margins(y=0.2)
    ax.autoscale_view()
    if len(values) <= 40:
        bottom = ax.get_ylim()[0]
        for x, heights in groups:
            for xi, h in zip(x, heights):
                ax.annotate(human_bytes(h), (xi, h if h > 0 else (bottom if log else 0)), xytext=(0, 2),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7, rotation=90)
    _byte_ticks(ax, log)
    ax.set_xticks(range(len(labels)), [_short(s) for s in labels], rotation=20 if len(labels) > 6 else 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)


def chart_local(result: dict, path: str) -> None:
    """Bytes each version adds, one bar per chunk size; and the total to store at each chunk size."""
    plt = _pyplot()
    reports = result["reports"]
    labels = [v["version"] for v in reports[0]["versions"]]
    fig, (ax, ax_total) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 1]})
    estimated = any(r["stored"]["estimated"] for r in reports)
    _grouped_bars(ax, labels, [(f"{_cut_label(r)} (total {human_bytes(r['stored_bytes'])})",
                                [v["new_stored_bytes"] for v in r["versions"]]) for r in reports],
                  xlabel="version (in the order given)", ylabel="bytes added, stored",
                  title="Bytes each version adds after the earlier ones"
                        + (" (compression estimated from a sample)" if estimated else ""))

    names = [f"{r['chunker']} {_tick(r['chunk_size'])}" for r in reports]
    stored = [r["stored_bytes"] for r in reports]
    manifests = [r["manifest_bytes"] for r in reports]
    ax_total.bar(names, stored, label="chunks (stored)", color="tab:blue")
    ax_total.bar(names, manifests, bottom=stored, label="manifests", color="tab:orange")
    for i, (s, m) in enumerate(zip(stored, manifests)):
        ax_total.annotate(human_bytes(s + m), (i, s + m), xytext=(0, 2), textcoords="offset points", ha="center",
                          va="bottom", fontsize=7, rotation=90 if len(reports) > 2 else 0)
    ax_total.margins(y=0.2)
    ax_total.autoscale_view()
    ax_total.grid(axis="y", alpha=0.3)
    _byte_ticks(ax_total, False)
    ax_total.set_xlabel("chunker and chunk size")
    ax_total.set_title(f"Total to store, {len(labels)} versions", fontsize=10)
    ax_total.tick_params(axis="x", labelsize=8)
    ax_total.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_store(report: dict, path: str) -> None:
    """Per version: stored bytes it brought and bytes only it references; and the shared matrix as a heat map."""
    plt = _pyplot()
    labels = [v["version"] for v in report["versions"]]
    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    _grouped_bars(ax, labels, [("new stored (first brought by it)", [v["new_stored_bytes"] for v in report["versions"]]),
                               ("exclusive stored (only it references)",
                                [v["exclusive_stored_bytes"] for v in report["versions"]])],
                  xlabel="version (creation order)", ylabel="stored bytes",
                  title=f"{report['model']}: where stored bytes go (total {human_bytes(report['stored_bytes'])})")

    matrix = report["shared_raw_bytes"]["matrix"]
    share = [[100 * matrix[i][j] / matrix[i][i] if matrix[i][i] else 0 for j in range(len(labels))]
             for i in range(len(labels))]
    image = ax_map.imshow(share, vmin=0, vmax=100, cmap="viridis")
    ax_map.set_xticks(range(len(labels)), [_short(s, 8) for s in labels], rotation=90 if len(labels) > 8 else 0)
    ax_map.set_yticks(range(len(labels)), [_short(s, 8) for s in labels])
    if len(labels) <= 12:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax_map.text(j, i, f"{share[i][j]:.0f}", ha="center", va="center", fontsize=8,
                            color="black" if share[i][j] > 60 else "white")
    ax_map.set_xlabel("also in version")
    ax_map.set_ylabel("version")
    ax_map.set_title("% of the row version's bytes shared with the column", fontsize=10)
    fig.colorbar(image, ax=ax_map, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------------


def run(args) -> tuple[dict, str]:
    if args.chart:
        _pyplot()  # fail before the work if the chart cannot be drawn
    if args.mode == "local":
        result = analyze_local(args.paths, args.chunk_size or list(DEFAULT_CHUNK_SIZES),
                               chunkers=args.chunker or [DEFAULT_CHUNKER], sample=args.sample, policy=args.codec,
                               level=args.level, pack_below=args.pack_below,
                               n_workers=args.workers or default_workers(), progress=True)
        if args.chart:
            chart_local(result, args.chart)
        return result, render_local(result, args.top)
    with Store.open(args.store, cache_dir=False, n_workers=args.workers) as store:
        result = analyze_store(store, args.model, args.versions)
    if args.chart:
        chart_store(result, args.chart)
    return result, render_store(result, args.top)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result, text = run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CasError, OSError, ValueError, TypeError) as exc:
        if args.verbose:
            raise
        print(f"{PROG}: {describe_error(exc)}".replace("\n", " "), file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result, indent=2) if args.json else text)
    if args.chart and not args.json:
        print(f"\nchart written to {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
