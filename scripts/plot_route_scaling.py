"""Plot route-scaling sweeps (JSON lines of scripts/route_scaling.py) and print the table.

    python3 scripts/plot_route_scaling.py OUT.png V4.jsonl[,V4b.jsonl...] V6.jsonl[,...]

With several sweeps of a family, each point is the lowest of them (TNA and the reference
separately): on a shared machine interference only ever adds time.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def sweeps(paths: str) -> dict[int, dict[str, list[float]]]:
    points: dict[int, dict[str, list[float]]] = {}
    for path in paths.split(","):
        for line in open(path):
            if line.strip():
                p = json.loads(line)
                row = points.setdefault(p["routes"], {"tna": [], "fib": []})
                for key in ("tna", "fib"):
                    row[key].append(p[key] - p["empty"])
    return points


def main() -> None:
    out_png, families = sys.argv[1], {"IPv4": sweeps(sys.argv[2]), "IPv6": sweeps(sys.argv[3])}
    fig, ax = plt.subplots(figsize=(7, 4))
    rows = []
    for fam, points in families.items():
        xs = sorted(points)
        for key, style, name in (("tna", "-o", "TNA"), ("fib", "--s", "bare fib router")):
            ax.plot(xs, [min(points[x][key]) for x in xs], style, label=f"{fam} {name}")
        for x in xs:
            t, f = points[x]["tna"], points[x]["fib"]
            rows.append(f"| {fam} | {x:,} | {min(t):.0f} | {min(f):.0f} | "
                        f"{', '.join(f'{v:.0f}' for v in t)} | {', '.join(f'{v:.0f}' for v in f)} |")
    ax.set_xscale("log")
    ax.set_xlabel("routes in the main table")
    ax.set_ylabel("ns per packet (program only)")
    ax.set_title("Program cost vs routing-table size (64 B, random destinations)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    print("| family | routes | TNA ns | bare fib router ns | TNA, each sweep | fib, each sweep |\n"
          "|---|---|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
