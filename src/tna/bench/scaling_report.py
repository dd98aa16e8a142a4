"""The scaling sweeps' outputs: path costs, scaling.json, the Markdown tables, the charts.

Role in the flow: ``tna.bench.scaling`` measures and hands over a JSON-ready document
(``{"meta": ..., "sweeps": {name: {"points": [...]}}}``, each point every run's ns per packet
per mode); everything derived is computed here from it alone, so an earlier run can be
rendered again (``--from-json``).  A point's path cost of a mode is the lowest of its runs
minus the lowest of the null mode's: on a shared machine interference only adds time.
matplotlib is optional: without it the charts are skipped with a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FAST_PATH_MIN = 0.95
MODE_STYLE = {"linux": ("--s", "Linux"), "tna": ("-o", "TNA")}
LOG_Y = {"rules"}  # groups whose costs span decades
ORDER = ("routes4", "routes6", "flows", "rules-nft", "rules-ipt", "fdb", "conntrack")
RANK = {"error": 0, "invalid": 1, "ok": 2}  # merging runs: the best verdict a point had
Doc = Mapping[str, Any]


def lowest(row: Doc, mode: str) -> float | None:
    ns = row["modes"].get(mode, {}).get("ns") or []
    return min(ns) if ns else None


def path_ns(row: Doc, mode: str) -> float | None:
    """The DUT's cost per packet in ``mode`` at this point (lowest runs), or None."""
    m, null = lowest(row, mode), lowest(row, "null")
    return m - null if m is not None and null is not None else None


def tna_fast(row: Doc) -> float | None:
    fp = row["modes"].get("tna", {}).get("fast_path")
    return float(fp) if fp is not None else None


def ordered(doc: Doc) -> list[tuple[str, Doc]]:
    """The sweeps in ORDER (merged documents may list them otherwise), unknown ones last."""
    return sorted(doc["sweeps"].items(),
                  key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER))


def groups(doc: Doc) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, sweep in ordered(doc):
        out.setdefault(sweep["group"], []).append(name)
    return out


# ---- Markdown --------------------------------------------------------------------------------

def _ns(v: float | None) -> str:
    return f"{v:,.0f}" if v is not None else "-"


def _note(row: Doc) -> str:
    tna = row["modes"].get("tna", {})
    bits = []
    if tna.get("status") not in (None, "ok"):
        bits.append(f"TNA {tna['status']}")
    if tna.get("note"):
        bits.append(tna["note"])
    for mode, m in row["modes"].items():
        if mode != "tna" and m.get("status") not in ("ok", None):
            bits.append(f"{mode}: {m['status']} {m.get('note', '')}".strip())
    facts = row.get("facts") or {}
    if "nf_conntrack_count" in facts:
        bits.append(f"nf_conntrack_count {facts['nf_conntrack_count']:,}")
    return "; ".join(bits).replace("|", "/")


def table(name: str, sweep: Doc) -> str:
    lines = [f"**{name}**: {sweep['title']}.", "",
             f"| {sweep['what']} | install s | TNA apply s | Linux path ns | TNA path ns | "
             "Linux/TNA | TNA fast path | null ns | Linux ns, each run | TNA ns, each run | "
             "load 1/5 min | notes |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for row in sweep["points"]:
        lx, tn = path_ns(row, "linux"), path_ns(row, "tna")
        fp = tna_fast(row)
        each = {m: ", ".join(f"{v:.0f}" for v in row["modes"].get(m, {}).get("ns", []))
                for m in ("linux", "tna")}
        loads = [x for x in row.get("loads") or [row.get("load")] if x]
        lines.append(
            f"| {row['n']:,} | {row['install_s']:.1f} | {_secs(row.get('tna_apply_s'))} | "
            f"{_ns(lx)} | {_ns(tn)} | "
            f"{f'{lx / tn:.1f}x' if lx and tn and lx > 0 and tn > 0 else '-'} | "
            f"{f'{fp:.0%}' if fp is not None else '-'} | {_ns(lowest(row, 'null'))} | "
            f"{each['linux']} | {each['tna']} | "
            f"{', '.join(f'{x[0]:.2f}' for x in loads)} | {_note(row)} |")
    return "\n".join(lines)


def summary(name: str, sweep: Doc) -> str:
    """The few columns docs/benchmarks.md shows (the full table is in scaling.md)."""
    lines = [f"| {sweep['what']} | install s | TNA apply s | Linux path ns | TNA path ns | "
             "Linux/TNA | TNA fast path |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sweep["points"]:
        lx, tn, fp = path_ns(row, "linux"), path_ns(row, "tna"), tna_fast(row)
        lines.append(
            f"| {row['n']:,} | {row['install_s']:.1f} | {_secs(row.get('tna_apply_s'))} | "
            f"{_ns(lx)} | {_ns(tn)} | "
            f"{f'{lx / tn:.1f}x' if lx and tn and lx > 0 and tn > 0 else '-'} | "
            f"{f'{fp:.0%}' if fp is not None else '-'} |")
    return "\n".join(lines)


def markdown(doc: Doc) -> str:
    m = doc.get("meta", {})
    head = (f"Run {m.get('date', '?')} to {m.get('ended', '?')} on {m.get('machine', '?')}, "
            f"kernel {m.get('kernel', '?')}, revision `{m.get('revision', '?')}`, "
            f"tna_xdp.bpf.o {m.get('tna_xdp_sha256', '?')}; traffic source "
            f"**{m.get('source', '?')}**, {m.get('frame', 64)}-byte frames, CPU {m.get('cpu')}; "
            f"{m.get('runs')} runs x {m.get('window_s')} s windows per mode and size (lowest "
            f"kept); {m.get('seconds', 0) / 60:.0f} min in all; load average "
            f"{_loads(m.get('load_start'))} at the start, {_loads(m.get('load_end'))} at the "
            f"end; nf_conntrack_max {_int(m.get('nf_conntrack_max'))}, nf_conntrack_buckets "
            f"{_int(m.get('nf_conntrack_buckets'))} (both the init namespace's).")
    for other in m.get("merged", []):
        head += (f" Merged with the run of {other.get('date', '?')} to {other.get('ended', '?')}"
                 f" (revision `{other.get('revision', '?')}`, load average "
                 f"{_loads(other.get('load_start'))} at the start, "
                 f"{_loads(other.get('load_end'))} at the end): each point the lowest of all.")
    parts = [head]
    for name, sweep in ordered(doc):
        parts.append(table(name, sweep) + f"\n\n({sweep.get('seconds', 0):.0f} s.)")
    return "\n\n".join(parts) + "\n"


def _secs(v: object) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) else "-"


def _int(v: object) -> str:
    return f"{v:,}" if isinstance(v, int) else "?"


def _loads(xs: Sequence[float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in xs) if xs else "?"


# ---- charts ----------------------------------------------------------------------------------

def plot(doc: Doc, out_dir: str) -> list[str]:
    """scaling-<group>.png per sweep group; messages for the user."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["charts skipped: matplotlib is not installed (pip install -e '.[plot]')"]
    msgs = []
    for group, names in groups(doc).items():
        fig, ax = plt.subplots(figsize=(7, 4))
        what = ""
        for i, name in enumerate(names):
            sweep = doc["sweeps"][name]
            what = sweep["what"]
            for mode, (style, label) in MODE_STYLE.items():
                pts = [(r["n"], y) for r in sweep["points"]
                       if (y := path_ns(r, mode)) is not None and y > 0]
                if pts:
                    line = f"{sweep['label']} {label}" if len(names) > 1 else label
                    ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=line,
                            color=f"C{i}", alpha=0.6 if mode == "linux" else 1.0)
            _mark_slow(ax, sweep)
        ax.set_xscale("log")
        if group in LOG_Y:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel(what)
        ax.set_ylabel("path cost, ns per packet (lowest run)")
        ax.set_title(f"Cost as the work grows: {group} (64 B, Linux vs TNA)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = os.path.join(out_dir, f"scaling-{group}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        msgs.append(f"wrote {path}")
    return msgs


def _mark_slow(ax: Any, sweep: Doc) -> None:
    """Points where TNA was not on its fast path get a hollow red ring: what they show is
    TNA handing traffic to Linux."""
    xs, ys = [], []
    for r in sweep["points"]:
        fp, y = tna_fast(r), path_ns(r, "tna")
        if y is not None and y > 0 and (fp is None or fp < FAST_PATH_MIN):
            xs.append(r["n"])
            ys.append(y)
    if xs:
        ax.plot(xs, ys, "o", markersize=12, markerfacecolor="none", markeredgecolor="red",
                label=f"{sweep['label']}: TNA < 95% fast path")


def merge(docs: Sequence[Doc]) -> dict[str, Any]:
    """Several runs as one: each point keeps every run's ns of every document (so the lowest
    is the lowest of all), the worst fast-path share and each document's load; the first
    document's meta, with the others' dates and loads beside it."""
    if not docs:
        raise ValueError("nothing to merge")
    for doc in docs:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("sweeps"), Mapping) \
                or not isinstance(doc.get("meta"), Mapping):
            raise ValueError("not a scaling.json (no meta or sweeps)")
    out: dict[str, Any] = _copy(docs[0])
    for doc in docs[1:]:
        for name, sweep in doc["sweeps"].items():
            if name in out["sweeps"]:
                _merge_points(out["sweeps"][name], sweep)
            else:
                out["sweeps"][name] = _copy(sweep)
        out["meta"].setdefault("merged", []).append(
            {k: doc["meta"].get(k) for k in ("date", "ended", "load_start", "load_end",
                                             "revision", "seconds")})
    return out


def _copy(x: Any) -> Any:
    return json.loads(json.dumps(x))


def _merge_points(mine: dict[str, Any], other: Doc) -> None:
    rows = {r["n"]: r for r in mine["points"]}
    for r in other["points"]:
        row = rows.get(r["n"])
        if row is None:
            mine["points"].append(_copy(r))
            continue
        for mode, m in r["modes"].items():
            have = row["modes"].get(mode)
            if have is None:
                row["modes"][mode] = _copy(m)
                continue
            if RANK.get(m.get("status"), 0) > RANK.get(have.get("status"), 0):
                have["status"], have["note"] = m.get("status"), m.get("note", "")
            have["ns"] = [*have.get("ns", []), *m.get("ns", [])]
            fps = [x for x in (have.get("fast_path"), m.get("fast_path")) if x is not None]
            have["fast_path"] = min(fps) if fps else None
        row["install_s"] = min(row["install_s"], r["install_s"])
        if "tna_apply_s" in r:
            row["tna_apply_s"] = min(row.get("tna_apply_s", r["tna_apply_s"]), r["tna_apply_s"])
        row.setdefault("loads", [row.get("load")]).append(r.get("load"))
    mine["points"].sort(key=lambda r: r["n"])


def write(doc: Doc, out: str) -> list[str]:
    os.makedirs(out, exist_ok=True)
    Path(out, "scaling.json").write_text(json.dumps(doc, indent=1) + "\n")
    Path(out, "scaling.md").write_text(markdown(doc))
    return [f"wrote {out}/scaling.json, {out}/scaling.md", *plot(doc, out)]
