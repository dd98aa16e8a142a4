"""``tna top``: live per-interface rates of the fast path and of what it hands to Linux.

Role in the flow: read-only, after apply.  Every interval it reads the pinned counters (and
the firewall rule counters) of one namespace or of all, and shows the differences as rates:
packets/s and bits/s on the fast path and to Linux, the fast path's share, the top punt
reasons, and rule hit rates.  Rendering is ``rich``'s: a live table on a terminal (also over
ssh), plain text when the output is not a terminal or with ``--once`` / ``--iterations``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.table import Table

from tna import control, counters, netns
from tna.counters import RuleTables
from tna.datapath import status

FAST = ("forwarded", "bridged")  # work the fast path did, counted on the ingress interface
NOT_LINUX = (*FAST, "transmitted", "fw_dropped")
TOP_REASONS = 3


@dataclass
class Sample:
    at: float  # time.monotonic()
    rows: dict[tuple[str, str], dict[str, status.Counter]]  # (namespace, interface) -> counters
    rules: dict[tuple[str, str], int] = field(default_factory=dict)  # (namespace, rule) -> pkts


@dataclass
class IfaceRates:
    namespace: str
    ifname: str
    fast_pps: float
    fast_bps: float
    linux_pps: float
    linux_bps: float
    dropped_pps: float
    reasons: list[tuple[str, float]]  # the top punt reasons, packets/s

    @property
    def share(self) -> float | None:
        """Fast-path share of the frames this interface received, or None with no traffic."""
        total = self.fast_pps + self.linux_pps + self.dropped_pps
        return (self.fast_pps + self.dropped_pps) / total if total else None


class Source:
    """One namespace: where to read, and the firewall tables that name its rules."""

    def __init__(self, name: str) -> None:
        self.name = name  # '' = the namespace this process is in
        self.tables: RuleTables | None = None
        with self.entered():
            if counters.created() is not None:
                self.tables = control.firewall_record()

    def entered(self) -> contextlib.AbstractContextManager[None]:
        return netns.entered(self.name) if self.name else contextlib.nullcontext()

    def read(self, label: str) -> tuple[dict[tuple[str, str], dict[str, status.Counter]],
                                        dict[tuple[str, str], int]]:
        with self.entered():
            raw = counters.read_raw()
            rows = {(label, counters.ifname(i) if i else "(no entry)"): row
                    for i, row in raw.rows.items() if not counters.is_phantom(i, row)}
            rules = {}
            if self.tables is not None and raw.created is not None:
                rules = {(label, r["rule"]): int(r["packets"])
                         for r in counters.rule_rows(self.tables, since_reset=False)
                         if "stale" not in r}
        return rows, rules


def all_namespaces() -> list[str]:
    """The current namespace and every one ``ip netns`` names."""
    try:
        named = sorted(os.listdir(netns.NETNS_RUN_DIR))
    except FileNotFoundError:
        named = []
    return ["", *named]


def sample(sources: list[Source], labelled: bool) -> Sample:
    out = Sample(time.monotonic(), {})
    for src in sources:
        try:
            rows, rules = src.read((src.name or "-") if labelled else "")
        except netns.NetnsError:
            continue  # removed since: nothing to show
        out.rows.update(rows)
        out.rules.update(rules)
    return out


def rates(before: Sample, after: Sample) -> list[IfaceRates]:
    dt = max(after.at - before.at, 1e-6)
    out = []
    for key, row in sorted(after.rows.items()):
        old = before.rows.get(key, {})

        def delta(name: str, row: dict[str, status.Counter] = row,
                  old: dict[str, status.Counter] = old) -> tuple[float, float]:
            now, then = row[name], old.get(name, status.Counter(0, 0))
            if now.packets < then.packets:  # counters recreated: count from zero
                then = status.Counter(0, 0)
            return (now.packets - then.packets) / dt, (now.bytes - then.bytes) * 8 / dt

        fast = [delta(n) for n in FAST if n in row]
        punts = {n: delta(n) for n in row if n not in NOT_LINUX}
        top = sorted(((n, pps) for n, (pps, _) in punts.items() if pps), key=lambda x: -x[1])
        out.append(IfaceRates(key[0], key[1], sum(p for p, _ in fast), sum(b for _, b in fast),
                              sum(p for p, _ in punts.values()),
                              sum(b for _, b in punts.values()),
                              delta("fw_dropped")[0] if "fw_dropped" in row else 0.0,
                              top[:TOP_REASONS]))
    return out


def rule_rates(before: Sample, after: Sample) -> list[tuple[str, str, float, int]]:
    """(namespace, rule, packets/s, packets) for every rule with counters."""
    dt = max(after.at - before.at, 1e-6)
    return [(ns, rule, max(0, n - before.rules.get((ns, rule), n)) / dt, n)
            for (ns, rule), n in sorted(after.rules.items())]


def human(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f}{prefix}{unit}"
    return f"{value:.0f}{unit}" if value >= 10 or value == 0 else f"{value:.1f}{unit}"


def render(before: Sample, after: Sample, labelled: bool, interval: float) -> Group:
    t = Table(title=f"tna top  {time.strftime('%H:%M:%S')}  every {interval:g} s",
              title_justify="left", box=None, header_style="bold")
    if labelled:
        t.add_column("namespace")
    for name in ("interface", "fast pkt/s", "fast bit/s", "Linux pkt/s", "Linux bit/s",
                 "dropped/s", "fast share"):
        t.add_column(name, justify="left" if name == "interface" else "right")
    t.add_column("top punt reasons (pkt/s)")
    for r in rates(before, after):
        share = f"{r.share:.1%}" if r.share is not None else "-"
        reasons = ", ".join(f"{n} {human(p)}" for n, p in r.reasons) or "-"
        t.add_row(*([r.namespace] if labelled else []), r.ifname, human(r.fast_pps),
                  human(r.fast_bps), human(r.linux_pps), human(r.linux_bps),
                  human(r.dropped_pps), share, reasons)
    if not after.rows:
        t.caption = "TNA is not attached here"
    parts: list[Table] = [t]
    rule_rows = rule_rates(before, after)
    if rule_rows:
        rt = Table(box=None, header_style="bold")
        if labelled:
            rt.add_column("namespace")
        rt.add_column("firewall rule")
        rt.add_column("hits/s", justify="right")
        rt.add_column("hits", justify="right")
        for ns, rule, pps, n in rule_rows:
            rt.add_row(*([ns] if labelled else []), rule, human(pps), str(n))
        parts.append(rt)
    return Group(*parts)


def frames(sources: list[Source], labelled: bool, interval: float,
           iterations: int | None) -> Iterator[Group]:
    """One rendering per interval, ``iterations`` of them (None: until interrupted)."""
    before = sample(sources, labelled)
    n = 0
    while iterations is None or n < iterations:
        time.sleep(max(0.0, before.at + interval - time.monotonic()))
        after = sample(sources, labelled)
        yield render(before, after, labelled, interval)
        before, n = after, n + 1


def run(every: bool, interval: float, iterations: int | None) -> int:
    """The namespace the CLI entered, or with ``every`` all of them."""
    sources = []
    for name in all_namespaces() if every else [""]:
        with contextlib.suppress(netns.NetnsError):  # removed since the listing
            sources.append(Source(name))
    console = Console(width=None if Console().is_terminal else 160)
    if iterations is None and console.is_terminal:
        from rich.live import Live

        with Live(console=console, auto_refresh=False, screen=False) as live:
            for frame in frames(sources, every, interval, None):
                live.update(frame, refresh=True)
        return 0
    for frame in frames(sources, every, interval, iterations):
        console.print(frame)
    return 0
