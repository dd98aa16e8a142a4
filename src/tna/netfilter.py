"""The netfilter ruleset of the current namespace, as :class:`NetfilterChain` records (and
nftables' named sets as :class:`NetfilterSet` records, for the firewall compiler).

Role in the flow: part of kernel → ``Snapshot``.  XDP runs before netfilter, so the planner
must know every chain that could change a forwarded packet's fate.  nftables is read through
``nft -j`` (which also shows iptables-nft rules, as ordinary nft tables); iptables-legacy
tables are invisible to nft and are read from ``iptables-legacy-save`` when the kernel says
they exist.

The parsers are pure functions so unit tests can feed them recorded output.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
from typing import Any

from tna.model import NetfilterChain, NetfilterSet

# /proc/net is the *process'* namespace; thread-self follows the thread that entered one.
PROC_NET = "/proc/thread-self/net"

# nft's named base-chain priorities, in case a version prints them as strings in JSON.
NAMED_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0,
                    "security": 50, "srcnat": 100, "out": 100}

# Priorities of the legacy xtables hooks (NF_IP_PRI_* in include/uapi/linux/netfilter_ipv4.h).
LEGACY_PRIORITIES = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
LEGACY_NAT_PRIORITIES = {"prerouting": -100, "output": -100, "input": 100, "postrouting": 100}
LEGACY_HOOKS = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward",
                "OUTPUT": "output", "POSTROUTING": "postrouting"}
LEGACY_SOURCES = (("ip", "ip_tables_names", "iptables-legacy-save"),
                  ("ip6", "ip6_tables_names", "ip6tables-legacy-save"))


class NetfilterError(Exception):
    """The ruleset cannot be read, so nothing may be assumed about it."""


def _run(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        raise NetfilterError(f"{argv[0]} not found; cannot read the netfilter ruleset")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NetfilterError(f"{' '.join(argv)}: {exc}") from exc
    if proc.returncode != 0:
        raise NetfilterError(f"{' '.join(argv)} exited {proc.returncode}: "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def chains() -> tuple[NetfilterChain, ...]:
    """Every chain of nftables and of iptables-legacy; raises :class:`NetfilterError`."""
    return ruleset()[0]


def ruleset() -> tuple[tuple[NetfilterChain, ...], tuple[NetfilterSet, ...]]:
    """Every chain of nftables and of iptables-legacy, and nftables' named sets, read at
    once (one listing); raises :class:`NetfilterError`."""
    # stateless: counter values left out, so rule texts do not change with traffic
    text = _nft("list ruleset", json_output=True)
    found, sets = parse_nft_json(text), parse_nft_sets(text)
    if any(_needs_devices(c) for c in found) or '"flags"' in text:
        # nft 1.0.6 omits "dev" from listed chains and prints the table's name instead of
        # its flags in JSON; the plain-text listing has both right.
        devices, dormant = parse_nft_text(_nft("list ruleset", json_output=False))
        found = tuple(_with_devices(c, devices) for c in found
                      if (c.family, c.table) not in dormant)
        sets = tuple(s for s in sets if (s.family, s.table) not in dormant)
    return found + legacy_chains(), sets


# libnftables output flags (nftables/libnftables.h)
NFT_CTX_OUTPUT_STATELESS = 1 << 2
NFT_CTX_OUTPUT_JSON = 1 << 4


def _nft(command: str, json_output: bool) -> str:
    """Run an nft command: in-process through libnftables (0.1 ms instead of a 2 ms
    subprocess, which matters to the daemon's reaction time), else through the nft binary."""
    lib = _libnftables()
    if lib is None:
        return _run(["nft", *(["-j", "-s"] if json_output else []), *command.split()])
    ctx = lib.nft_ctx_new(0)  # a fresh context: its socket opens in the caller's namespace
    if not ctx:
        raise NetfilterError("libnftables: cannot create a context")
    try:
        lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_STATELESS
                                     | (NFT_CTX_OUTPUT_JSON if json_output else 0))
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        if lib.nft_run_cmd_from_buffer(ctx, command.encode()) != 0:
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip()
            raise NetfilterError(f"nft {command}: {err or 'failed'}")
        return (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)


@functools.cache
def _libnftables() -> Any:
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    vp = ctypes.c_void_p
    for name, restype, argtypes in (
            ("nft_ctx_new", vp, [ctypes.c_uint32]),
            ("nft_ctx_free", None, [vp]),
            ("nft_ctx_output_set_flags", None, [vp, ctypes.c_uint]),
            ("nft_ctx_buffer_output", ctypes.c_int, [vp]),
            ("nft_ctx_buffer_error", ctypes.c_int, [vp]),
            ("nft_run_cmd_from_buffer", ctypes.c_int, [vp, ctypes.c_char_p]),
            ("nft_ctx_get_output_buffer", ctypes.c_char_p, [vp]),
            ("nft_ctx_get_error_buffer", ctypes.c_char_p, [vp])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _needs_devices(chain: NetfilterChain) -> bool:
    return chain.hook in ("ingress", "egress") and not chain.devices


def _with_devices(chain: NetfilterChain,
                  devices: dict[tuple[str, str, str], tuple[str, ...]]) -> NetfilterChain:
    if not _needs_devices(chain):
        return chain
    return dataclasses.replace(chain, devices=devices.get((chain.family, chain.table,
                                                          chain.name), ()))


# --- nftables --------------------------------------------------------------------------------


def _priority(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return NAMED_PRIORITIES.get(value)
    return None


def _devices(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def _is_dormant(table: dict[str, Any]) -> bool:
    flags = table.get("flags") or []
    return "dormant" in ([flags] if isinstance(flags, str) else flags)


def rule_text(rule: dict[str, Any]) -> str:
    """A rule as one line: its handle and its expressions as compact JSON."""
    text = f"handle {rule.get('handle')}: {json.dumps(rule.get('expr', []), separators=(',', ':'))}"
    if rule.get("comment"):
        text += f" comment {json.dumps(rule['comment'])}"
    return text


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _nft_objects(text: str) -> list[dict[str, Any]]:
    """The objects of ``nft -j list ruleset`` that are not in a dormant table."""
    try:
        objects = json.loads(text).get("nftables", [])
    except (ValueError, AttributeError) as exc:
        raise NetfilterError(f"unparsable nft JSON: {exc}") from exc
    dormant = {(t["family"], t["name"]) for o in objects if (t := o.get("table"))
               and _is_dormant(t)}
    return [o for o in objects
            if not any((v["family"], v.get("table")) in dormant
                       for k, v in o.items() if k in ("chain", "rule", "set"))]


def parse_nft_json(text: str) -> tuple[NetfilterChain, ...]:
    """Parse ``nft -j list ruleset``.  Chains of dormant tables are left out: they do nothing.

    Chains keep the order nft lists them in, rules the order they run in.
    """
    chain_objs: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for obj in _nft_objects(text):
        if c := obj.get("chain"):
            key = (c["family"], c["table"], c["name"])
            chain_objs[key] = c
            rules.setdefault(key, [])
        elif r := obj.get("rule"):
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    return tuple(_nft_chain(c, rules[key]) for key, c in chain_objs.items())


def _nft_chain(c: dict[str, Any], rules: list[dict[str, Any]]) -> NetfilterChain:
    base = "hook" in c
    return NetfilterChain(
        source="nftables", family=c["family"], table=c["table"], name=c["name"],
        hook=c.get("hook"), priority=_priority(c.get("prio")) if base else None,
        policy=c.get("policy") if base else None, devices=_devices(c.get("dev")),
        rules=tuple(rule_text(r) for r in rules), type=c.get("type") if base else None,
        exprs=tuple(_compact(r.get("expr", [])) for r in rules),
        handles=tuple(r.get("handle") for r in rules),
    )


def parse_nft_sets(text: str) -> tuple[NetfilterSet, ...]:
    """The named sets of ``nft -j list ruleset`` (maps are not sets and are left out)."""
    out = []
    for obj in _nft_objects(text):
        if s := obj.get("set"):
            key_type = s.get("type", "")
            flags = s.get("flags") or []
            out.append(NetfilterSet(
                family=s["family"], table=s["table"], name=s["name"],
                type=" . ".join(key_type) if isinstance(key_type, list) else str(key_type),
                flags=tuple([flags] if isinstance(flags, str) else flags),
                elements=tuple(_compact(e) for e in s.get("elem") or []),
                timeout="timeout" in s))
    return tuple(out)


_TABLE_RE = re.compile(r"^table\s+(\S+)\s+(\S+)\s*\{")
_BLOCK_RE = re.compile(r"^\s*(\w+)\s+(\S+)\s*\{")
_FLAGS_RE = re.compile(r"^\s*flags\s+(.*)$")
_DEVICE_RE = re.compile(r"\bhook\s+\S+\s+(?:device\s+(\S+?)|devices\s*=\s*\{([^}]*)\})[\s;]")


def _unquote(name: str) -> str:
    return name.strip().strip('"')


def parse_nft_text(text: str) -> tuple[dict[tuple[str, str, str], tuple[str, ...]],
                                       frozenset[tuple[str, str]]]:
    """From the plain-text ``nft list ruleset``: the devices of every chain that names
    some, as (family, table, chain) → devices, and the dormant tables as (family, table).
    """
    devices: dict[tuple[str, str, str], tuple[str, ...]] = {}
    dormant: set[tuple[str, str]] = set()
    family = table = chain = ""
    in_block = False  # inside a chain, set, flowtable... of the current table
    for line in text.splitlines():
        if m := _TABLE_RE.match(line):
            family, table, chain, in_block = m.group(1), _unquote(m.group(2)), "", False
        elif m := _BLOCK_RE.match(line):
            # Flowtables also list devices; only chains count here.
            chain = _unquote(m.group(2)) if m.group(1) == "chain" else ""
            in_block = True
        elif line.strip() == "}":
            if not in_block:
                table = ""
            chain, in_block = "", False
        elif chain and (m := _DEVICE_RE.search(line + " ")):
            names = [m.group(1)] if m.group(1) else m.group(2).split(",")
            devices[(family, table, chain)] = tuple(_unquote(n) for n in names if n.strip())
        elif (table and not in_block and (m := _FLAGS_RE.match(line))
              and "dormant" in re.split(r"[\s,]+", m.group(1).strip())):
            dormant.add((family, table))
    return devices, frozenset(dormant)


# --- iptables-legacy -------------------------------------------------------------------------


def legacy_chains() -> tuple[NetfilterChain, ...]:
    """Chains of iptables-legacy, if the kernel has any legacy table in this namespace."""
    found: list[NetfilterChain] = []
    for family, names_file, save in LEGACY_SOURCES:
        # Reading the names file does not load anything; running *-save could load the
        # legacy modules, so it only runs when tables already exist.
        try:
            with open(os.path.join(PROC_NET, names_file)) as f:
                if not f.read().strip():
                    continue
        except OSError:
            continue
        found.extend(parse_iptables_save(_run([save]), family))
    return tuple(found)


def _legacy_priority(table: str, hook: str | None) -> int | None:
    if hook is None:
        return None
    if table == "nat":
        return LEGACY_NAT_PRIORITIES.get(hook)
    return LEGACY_PRIORITIES.get(table)


def parse_iptables_save(text: str, family: str) -> tuple[NetfilterChain, ...]:
    """Parse ``iptables-save`` output (``*table``, ``:CHAIN POLICY [p:b]``, ``-A`` lines)."""
    chains: dict[tuple[str, str], tuple[str | None, list[str]]] = {}
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":") and table:
            name, verdict = [*line[1:].split(), "-"][:2]
            chains[(table, name)] = (None if verdict == "-" else verdict.lower(), [])
        elif line.startswith("-A ") and table:
            name = line.split()[1]
            chains.setdefault((table, name), (None, []))[1].append(line)
    out = []
    for (tbl, name), (policy, rules) in chains.items():
        hook = LEGACY_HOOKS.get(name)
        out.append(NetfilterChain(
            source="iptables-legacy", family=family, table=tbl, name=name, hook=hook,
            priority=_legacy_priority(tbl, hook), policy=policy if hook else None,
            rules=tuple(rules), type=("nat" if tbl == "nat" else "filter") if hook else None,
            handles=tuple(range(1, len(rules) + 1))))
    return tuple(out)
