"""Plot the route-scaling sweep: JSON lines from scripts/route_scaling.py -> PNG + markdown."""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out_png = sys.argv[1]
series = {}
for fam, path in (("IPv4", sys.argv[2]), ("IPv6", sys.argv[3])):
    series[fam] = [json.loads(l) for l in open(path) if l.strip()]
fig, ax = plt.subplots(figsize=(7, 4))
rows = []
for fam, pts in series.items():
    xs = [p["routes"] for p in pts]
    for key, style in (("tna", "-o"), ("fib", "--s")):
        ys = [p[key] - p["empty"] for p in pts]
        ax.plot(xs, ys, style, label=f"{fam} {'TNA' if key == 'tna' else 'bare fib router'}")
    for p in pts:
        rows.append(f"| {fam} | {p['routes']:,} | {p['tna'] - p['empty']:.0f} | {p['fib'] - p['empty']:.0f} |")
ax.set_xscale("log"); ax.set_xlabel("routes in the main table"); ax.set_ylabel("ns per packet (program only)")
ax.set_title("Program cost vs routing-table size (64 B, random destinations)")
ax.grid(True, which="both", alpha=0.3); ax.legend()
fig.tight_layout(); fig.savefig(out_png, dpi=110)
print("| family | routes | TNA ns | bare fib router ns |\n|---|---|---|---|\n" + "\n".join(rows))
