"""Charts for bench/README.md, drawn from the JSON files the bench scripts write (matplotlib, PNG).

Proxy: calls/s achieved against offered rate, one line per proxy, one column per variant, and the
share of failed calls below; from one or more files of `bench/proxy/run.py --json FILE`:

    python bench/proxy/run.py --proxy kamailio,proxyapp1,proxyapp --variants plain,acc_db \\
        --rates 1000,2000,2500,3000,3500,4000,4500 --bisect 1 --duration 10 --json run.json
    python bench/plot.py --proxy run.json --out bench/charts/proxy.png
    python bench/plot.py --proxy bench/results/2026-11-26-proxy-AQ.json --out bench/charts/proxy-AQ.png

Parser: µs per parse (median) per library, one panel per workload and mode, log scale; from a file of
`bench/compare_parsers.py --json FILE`:

    python bench/compare_parsers.py --rounds 3 --json parsers.json
    python bench/plot.py --parser parsers.json --out bench/charts/parsers.png
    python bench/plot.py --parser bench/results/2026-11-26-parser-final.json --out bench/charts/parser-final.png

Options: --variants, --workloads, --modes keep only those panels; --title replaces the first title line.
Needs matplotlib only (`pip install matplotlib`); it reads JSON and measures nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

VARIANT_ORDER = ["plain", "acc_log", "acc_db"]
VARIANT_TITLE = {"plain": "plain relay", "acc_log": "accounting to a log file",
                 "acc_db": "accounting and CDRs to SQLite"}
PROXY_LABEL = {"kamailio": "Kamailio (2 children)", "proxyapp": "proxyapp, 2 workers",
               "proxyapp1": "proxyapp, 1 process", "proxyapp1-inline": "proxyapp, 1 process, accounting inline"}
PROXY_STYLE = {"kamailio": ("tab:red", "s"), "proxyapp1": ("tab:blue", "o"), "proxyapp": ("tab:green", "D"),
               "proxyapp1-inline": ("tab:purple", "^")}
OTHER_COLOURS = ["tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]


def passed(r: dict[str, Any]) -> bool:
    """The pass rule of bench/proxy/run.py (clean()): no failed call, every call succeeded, >= 95 % achieved."""
    return (not r.get("error") and r["attempted"] > 0 and r["failed"] == 0 and r["succeeded"] == r["attempted"]
            and r["achieved_rate"] >= 0.95 * r["rate"])


def machine_line(m: dict[str, Any], kamailio: bool = True) -> str:
    """One line of machine facts for a chart's subtitle (Kamailio's version only if it ran)."""
    cpu = m.get("cpu", "?").replace("(R)", "").replace(" Processor", "")
    kam = m.get("kamailio", "")
    kam = kam.split("kamailio ", 1)[1].split()[0] if "kamailio " in kam else ""
    sipp = m.get("sipp", "")
    sipp = sipp.split()[1].split("-")[0] if sipp.startswith("SIPp ") else ""
    commit = m.get("commit", "?")
    commit = commit.split()[0] + (" (+ uncommitted changes)" if "uncommitted" in commit else "")
    parts = [f"{m.get('date (UTC)', '?')} UTC", f"commit {commit}",
             f"{cpu}, {m.get('nproc', '?')} CPUs", f"Python {m.get('python', '?').split()[-1]}"]
    parts += [f"Kamailio {kam}"] if kam and kamailio else []
    parts += [f"SIPp {sipp}"] if sipp else []
    return ", ".join(parts)


# --------------------------------------------------------------------------- proxy

def load_proxy(paths: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(results, machines): results carry 'series', the proxy name plus the run's date when several
    files name that proxy, and 'file', the index of their file."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    seen: dict[str, int] = {}
    for run in runs:
        for name in {r["proxy"] for r in run["results"]}:
            seen[name] = seen.get(name, 0) + 1
    results = []
    for i, run in enumerate(runs):
        date = run["machine"].get("date (UTC)", "?")[5:]  # month, day and time: short enough for a legend
        for r in run["results"]:
            results.append(dict(r, file=i, series=r["proxy"] + (f" ({date})" if seen[r["proxy"]] > 1 else "")))
    return results, [run["machine"] for run in runs]


def plot_proxy(paths: list[str], out: str, variants: list[str] | None, title: str | None) -> None:
    results, machines = load_proxy(paths)
    present = [v for v in VARIANT_ORDER if any(r["variant"] == v for r in results)]
    present += sorted({r["variant"] for r in results} - set(present))
    if variants:
        present = [v for v in present if v in variants]
    if not present:
        raise SystemExit("no results for those variants")
    # Kamailio first: the reference, drawn under the others with the largest markers
    series = sorted(dict.fromkeys(r["series"] for r in results), key=lambda s: not s.startswith("kamailio"))
    style, spare = {}, iter(OTHER_COLOURS * 3)
    for s in series:
        base = s.split(" (")[0]
        style[s] = PROXY_STYLE.get(base) or (next(spare), "v")
    # lines coincide up to a proxy's limit: the first series gets the largest markers, so each one shows
    size = {s: max(4.0, 9.0 - 1.6 * i) for i, s in enumerate(series)}
    top_rate = max(r["rate"] for r in results if r["variant"] in present)

    fig, axes = plt.subplots(2, len(present), figsize=(max(9.0, 6.2 * len(present)), 7.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.25]}, sharex=True)
    for col, variant in enumerate(present):
        ax, axf = axes[0][col], axes[1][col]
        ax.plot([0, top_rate * 1.05], [0, top_rate * 1.05], ls=":", color="0.55", lw=1, zorder=1,
                label="achieved = offered")
        for s in series:
            rows = sorted((r for r in results if r["series"] == s and r["variant"] == variant),
                          key=lambda r: r["rate"])
            if not rows:
                continue
            colour, marker = style[s]
            dash = ["-", "--", "-.", ":"][rows[0]["file"] % 4]  # one line style per file
            ok = [r for r in rows if passed(r)]
            best = max(ok, key=lambda r: r["rate"])["rate"] if ok else None
            label = PROXY_LABEL.get(s.split(" (")[0], s.split(" (")[0]) + s[len(s.split(" (")[0]):]
            label += f": {best}/s" if best else ": no rate passed"
            if best and best == rows[-1]["rate"]:
                label += " (the top rate tried)"
            if any(r.get("acc_spooled") is not None for r in rows):
                kept = [r["rate"] for r in ok if r.get("acc_spooled") == 0]
                label += f", every record written {max(kept)}/s" if kept else ", records in the spool at every rate"
            x = [r["rate"] for r in rows]
            ax.plot(x, [r["achieved_rate"] for r in rows], color=colour, ls=dash, lw=1.6, label=label, zorder=2)
            for r in rows:
                ax.plot(r["rate"], r["achieved_rate"], marker=marker, ms=size[s], color=colour, zorder=3,
                        markerfacecolor=colour if passed(r) else "white", markeredgewidth=1.5)
                if r.get("acc_spooled"):
                    ax.plot(r["rate"], r["achieved_rate"], marker="o", ms=15, markerfacecolor="none",
                            markeredgecolor="0.35", markeredgewidth=1, zorder=3)
            axf.plot(x, [100.0 * r["failed"] / r["attempted"] if r["attempted"] else 100.0 for r in rows],
                     color=colour, ls=dash, marker=marker, ms=size[s] * 0.7, lw=1.4)
        ax.set_title(VARIANT_TITLE.get(variant, variant), fontsize=11)
        ax.set_ylabel("calls/s achieved (successful calls per second)")
        ax.set_ylim(0, top_rate * 1.08)
        ax.set_xlim(0, top_rate * 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8.5, title="proxy: highest passing rate", title_fontsize=8.5)
        axf.set_yscale("symlog", linthresh=0.1)
        axf.set_ylim(0, 100)
        axf.set_yticks([0, 0.1, 1, 10, 100])
        axf.set_yticklabels(["0", "0.1", "1", "10", "100"])
        axf.set_ylabel("failed calls, %")
        axf.set_xlabel("offered rate, calls/s (10 s of calls per rate)" if all(
            r["duration"] == 10 for r in results) else "offered rate, calls/s")
        axf.grid(True, alpha=0.3)
    marks = [Line2D([], [], marker="o", ls="", color="0.2", label="passed: no failed call, >= 95 % achieved"),
             Line2D([], [], marker="o", ls="", color="0.2", markerfacecolor="white", label="did not pass")]
    if any(r.get("acc_spooled") for r in results):
        marks.append(Line2D([], [], marker="o", ms=12, ls="", markerfacecolor="none", markeredgecolor="0.35",
                            label="accounting records left in the spool (written later)"))
    fig.legend(handles=marks, loc="lower center", ncol=len(marks), fontsize=8.5, frameon=False)
    heading = title or "Proxy benchmark: calls/s achieved against offered rate (SIPp caller -> proxy -> SIPp callee)"
    ran = {r["proxy"] for r in results}
    sub = "\n".join(machine_line(m, kamailio="kamailio" in ran) for m in machines)
    if any(m.get("source") for m in machines):
        sub += "\n(transcribed from the run's Markdown tables in bench/results/; its own JSON was not kept)"
    fig.suptitle(heading + "\n" + sub, fontsize=10.5)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    save(fig, out)


# --------------------------------------------------------------------------- parser

def lib_colour(lib: str) -> str:
    if lib == "fastsip-c":
        return "tab:blue"
    if lib == "fastsip-py":
        return "#7fb2e0"
    if lib in ("sofia-sip", "libosip2"):
        return "0.45"
    if lib == "py-floor":
        return "0.85"
    return "tab:orange"


def plot_parser(path: str, out: str, workloads: list[str] | None, modes: list[str] | None,
                title: str | None) -> None:
    saved = json.loads(Path(path).read_text())
    results = saved["results"]
    wls = [w for w in dict.fromkeys(r["workload"] for r in results) if not workloads or w in workloads]
    mds = [m for m in dict.fromkeys(r["mode"] for r in results) if not modes or m in modes]
    if not wls or not mds:
        raise SystemExit("no results for those workloads and modes")
    nlibs = len({r["lib"] for r in results})
    nrows = max(sum(1 for r in results if r["workload"] == w and r["mode"] == m and r.get("ok"))
                for w in wls for m in mds)
    fig, axes = plt.subplots(len(wls), len(mds), figsize=(5.6 * len(mds), 0.42 * nlibs * len(wls) + 1.8),
                             squeeze=False)
    drawn: set[str] = set()
    hi = max(r["median_us"] for r in results if r.get("ok"))
    lo = min(r["median_us"] for r in results if r.get("ok"))
    for i, wl in enumerate(wls):
        for j, mode in enumerate(mds):
            ax = axes[i][j]
            rows = [r for r in results if r["workload"] == wl and r["mode"] == mode]
            good = sorted((r for r in rows if r.get("ok")), key=lambda r: r["median_us"], reverse=True)
            drawn.update(r["lib"] for r in good)
            missing = [r for r in rows if not r.get("ok")]
            good.reverse()  # fastest first, drawn at the top (the y axis is inverted below)
            names = [r["lib"] + (" (no parsing)" if r["lib"] == "py-floor" else "") for r in good]
            vals = [r["median_us"] for r in good]
            bars = ax.barh(range(len(good)), vals, color=[lib_colour(r["lib"]) for r in good],
                           hatch=None, edgecolor="0.3", linewidth=0.5)
            for bar, r in zip(bars, good):
                if r["lib"] == "py-floor":
                    bar.set_hatch("//")
                ax.text(r["median_us"] * 1.08, bar.get_y() + bar.get_height() / 2, f"{r['median_us']:.2f}",
                        va="center", fontsize=8)
            ax.set_yticks(range(len(good)), names, fontsize=9)
            ax.set_ylim(nrows - 0.4, -0.6)
            ax.set_xscale("log")
            ax.set_xlim(lo / 1.6, hi * 2.6)
            ax.set_title(f"{wl} / {mode}", fontsize=10)
            ax.grid(True, axis="x", which="major", alpha=0.3)
            if i == len(wls) - 1:
                ax.set_xlabel("µs per call, median (log scale; lower is faster)")
            if missing:
                why = "; ".join(f"{r['lib']}: " + ("n/a" if r.get("unsupported") else "failed") for r in missing)
                ax.text(0.99, 0.02, why, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35",
                        wrap=True)
    m = saved["machine"]
    heading = title or "Parser benchmark: µs per call by library (bench/compare_parsers.py)"
    sub = machine_line(m)
    if m.get("rounds"):
        sub += f", {m['rounds'].split()[0]} rounds"
    sub += f", load average {m.get('load average at start', '?').split()[0]}"
    if m.get("source"):
        sub += "\n(transcribed from the run's Markdown tables in bench/results/; its own JSON was not kept)"
    fig.suptitle(heading + "\n" + sub, fontsize=10.5)
    kinds = [("fastsip, compiled backend", "tab:blue", {"fastsip-c"}),
             ("fastsip, pure-Python backend", "#7fb2e0", {"fastsip-py"}),
             ("C parsers", "0.45", {"sofia-sip", "libosip2"}),
             ("other Python SIP libraries", "tab:orange", None),
             ("py-floor: reading the fields of prebuilt objects", "0.85", {"py-floor"})]
    others = drawn - {"fastsip-c", "fastsip-py", "sofia-sip", "libosip2", "py-floor"}
    handles = [Patch(facecolor=c, edgecolor="0.3", hatch="//" if libs == {"py-floor"} else None, label=label)
               for label, c, libs in kinds if (libs & drawn if libs is not None else others)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.045 if len(wls) == 1 else 0.02, 1, 1))
    save(fig, out)


def save(fig: Figure, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def _split(s: str | None) -> list[str] | None:
    return s.split(",") if s else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--proxy", nargs="+", metavar="JSON", help="files written by bench/proxy/run.py --json")
    what.add_argument("--parser", metavar="JSON", help="a file written by bench/compare_parsers.py --json")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--variants", help="proxy: comma-separated variants to draw (default: all in the files)")
    ap.add_argument("--workloads", help="parser: comma-separated workloads to draw (default: all)")
    ap.add_argument("--modes", help="parser: comma-separated modes to draw (default: all)")
    ap.add_argument("--title", help="replaces the first line of the chart's title")
    args = ap.parse_args()
    if args.proxy:
        plot_proxy(args.proxy, args.out, _split(args.variants), args.title)
    else:
        plot_parser(args.parser, args.out, _split(args.workloads), _split(args.modes), args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
