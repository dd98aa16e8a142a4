"""The C/Python ABI of the data path, read from the one definition in ``bpf/include/tna_abi.h``.

Role in the flow: the loader fills maps with these layouts and ``tna stats`` names counters with
these codes.  Nothing here is typed twice: counter codes are parsed from the header that the
build ships next to the BPF object; the ctypes layouts mirror the C structs and
``tests/bpf/test_abi.py`` checks them against the object's BTF.
"""

from __future__ import annotations

import ctypes
import functools
import re
from importlib import resources
from pathlib import Path

BPF_DIR = Path(str(resources.files("tna") / "bpf"))
HEADER = BPF_DIR / "tna_abi.h"
XDP_OBJECT = BPF_DIR / "tna_xdp.bpf.o"

TNA_IF_EGRESS = 1 << 0
TNA_IF_NO_IPV4 = 1 << 1
TNA_IF_NO_IPV6 = 1 << 2
TNA_IF_BRIDGE = 1 << 3
TNA_IF_NO_BRIDGE_IPV4 = 1 << 4
TNA_IF_NO_BRIDGE_IPV6 = 1 << 5
TNA_IF_ACCEPT_REDIRECTS = 1 << 6
TNA_IF_REDIRECTS_UNWATCHED = 1 << 7

TNA_FDB_LOCAL = 1 << 0
TNA_FDB_STATIC = 1 << 1
TNA_FDB_STICKY = 1 << 2
TNA_FDB_MOVED = 1 << 3

TNA_BRPORT_FORWARDING = 1 << 0
TNA_BRPORT_PUNT = 1 << 1


class BuildMissing(RuntimeError):
    """The BPF objects were not built (run ``make build``)."""


class TnaIface(ctypes.Structure):
    _fields_ = [("mac", ctypes.c_uint8 * 6), ("flags", ctypes.c_uint16),
                ("slot", ctypes.c_uint32)]


class TnaCounter(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class TnaFeatures(ctypes.Structure):
    _fields_ = [("ipv4_router", ctypes.c_uint8), ("ipv6_router", ctypes.c_uint8),
                ("ipv4_rp_filter", ctypes.c_uint8), ("verify_l4_csum", ctypes.c_uint8),
                ("bridge_port", ctypes.c_uint8), ("bridge_ipv4", ctypes.c_uint8),
                ("bridge_ipv6", ctypes.c_uint8), ("bridge_egress", ctypes.c_uint8),
                ("firewall_ipv4", ctypes.c_uint8), ("firewall_ipv6", ctypes.c_uint8)]


class TnaFdbKey(ctypes.Structure):
    _fields_ = [("bridge", ctypes.c_uint32), ("vlan", ctypes.c_uint16),
                ("mac", ctypes.c_uint8 * 6)]


class TnaFdbEntry(ctypes.Structure):
    _fields_ = [("port", ctypes.c_uint32), ("flags", ctypes.c_uint16), ("pad", ctypes.c_uint16),
                ("seen_ns", ctypes.c_uint64)]


class TnaConfig(ctypes.Structure):
    _fields_ = [("route_mtu_v4", ctypes.c_uint32), ("route_mtu_v6", ctypes.c_uint32),
                ("fw_gen", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class TnaFwTable(ctypes.Structure):
    _fields_ = [("nrules", ctypes.c_uint32), ("nwords", ctypes.c_uint32),
                ("used", ctypes.c_uint32), ("stateful", ctypes.c_uint32),
                ("ct_timeout_ms", ctypes.c_uint32), ("iif_default", ctypes.c_uint32),
                ("oif_default", ctypes.c_uint32), ("ct_unreplied_ms", ctypes.c_uint32)]


class TnaFwRule(ctypes.Structure):
    _fields_ = [("verdict", ctypes.c_uint8), ("counted", ctypes.c_uint8),
                ("pad", ctypes.c_uint16), ("target", ctypes.c_uint32)]


class TnaBrport(ctypes.Structure):
    _fields_ = [("bridge", ctypes.c_uint32), ("flags", ctypes.c_uint16), ("pad", ctypes.c_uint16)]


def _header_text() -> str:
    try:
        return HEADER.read_text()
    except FileNotFoundError:
        raise BuildMissing(f"{HEADER} is missing: run 'make build'") from None


@functools.cache
def defines() -> dict[str, int]:
    """Numeric ``#define TNA_*`` constants of the header."""
    return {m[1]: int(m[2], 0) for m in
            re.finditer(r"^#define\s+(TNA_\w+)\s+(\d+|0x[0-9a-fA-F]+)\b", _header_text(), re.M)}


@functools.cache
def codes() -> dict[int, str]:
    """Counter code -> name: ``forwarded``, ``transmitted`` and the punt reasons."""
    body = re.search(r"enum tna_code \{(.*?)\};", _header_text(), re.S)
    if body is None:
        raise BuildMissing(f"{HEADER} has no enum tna_code")
    out: dict[int, str] = {}
    for name, value in re.findall(r"^\s*TNA_(\w+)\s*=\s*(\d+)\s*,", body[1], re.M):
        if name != "NR_CODES_USED":
            out[int(value)] = name.removeprefix("PUNT_").lower()
    return out


@functools.cache
def descriptions() -> dict[str, str]:
    """Code name -> the header's comment for it, for ``tna stats`` and the docs."""
    body = re.search(r"enum tna_code \{(.*?)\};", _header_text(), re.S)
    assert body is not None
    return {m[1].removeprefix("PUNT_").lower(): m[2].strip() for m in
            re.finditer(r"TNA_(\w+)\s*=\s*\d+\s*,\s*/\*(.*?)\*/", body[1])}


def code(name: str) -> int:
    return next(c for c, n in codes().items() if n == name)


FORWARDED, TRANSMITTED, BRIDGED, FW_DROPPED = 0, 1, 28, 39
VERDICTS = (FORWARDED, TRANSMITTED, BRIDGED, FW_DROPPED)  # codes that count work done


def punt_reasons() -> dict[int, str]:
    return {c: n for c, n in codes().items() if c not in VERDICTS}


def max_ifaces() -> int:
    return defines()["TNA_MAX_IFACES"]


def nr_codes() -> int:
    return defines()["TNA_NR_CODES"]


def xdp_object() -> Path:
    if not XDP_OBJECT.exists():
        raise BuildMissing(f"{XDP_OBJECT} is missing: run 'make build'")
    return XDP_OBJECT
