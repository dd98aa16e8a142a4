"""The C/Python ABI of the data path, derived from its one definition, ``bpf/include/tna_abi.h``.

Role in the flow: the loader fills maps with these layouts and load-time features, the planner
sets these flags and ``tna stats`` names counters with these codes.  Nothing here is typed
twice: constants, enums and struct layouts are parsed from the header that the build ships
next to the BPF object (``make build`` copies it to ``tna/bpf/tna_abi.h``; a source checkout
that was not built yet falls back to the header itself).  Every numeric ``#define TNA_*`` of the
header is an attribute of this module (``abi.TNA_IF_EGRESS``); every ``struct tna_*`` has a
ctypes type (``abi.TnaIface``, or :func:`struct_type`).  ``tests/bpf/test_abi.py`` checks
all of them against the object's BTF and the header.
"""

from __future__ import annotations

import ast
import ctypes
import functools
import operator
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

BPF_DIR = Path(str(resources.files("tna") / "bpf"))
HEADER = BPF_DIR / "tna_abi.h"
SOURCE_HEADER = Path(__file__).resolve().parents[2] / "bpf" / "include" / "tna_abi.h"
XDP_OBJECT = BPF_DIR / "tna_xdp.bpf.o"

# The header's scalar types as ctypes (network-order types are plain bytes to Python).
C_TYPES: dict[str, type] = {
    "__u8": ctypes.c_uint8, "__u16": ctypes.c_uint16, "__u32": ctypes.c_uint32,
    "__u64": ctypes.c_uint64, "__s32": ctypes.c_int32, "__be16": ctypes.c_uint16,
    "__be32": ctypes.c_uint32,
}


class BuildMissing(RuntimeError):
    """The BPF objects were not built (run ``make build``)."""


def header_path() -> Path:
    """The header the object was built from: the build's copy, else the source's."""
    for path in (HEADER, SOURCE_HEADER):
        if path.exists():
            return path
    raise BuildMissing(f"{HEADER} is missing: run 'make build'")


@functools.cache
def _header_text() -> str:
    text = header_path().read_text()
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m[0].count("\n"), text, flags=re.S)


def _raw_header_text() -> str:
    return header_path().read_text()


# ---- constants: #define TNA_* ----------------------------------------------------------------

_BINOPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.LShift: operator.lshift, ast.BitOr: operator.or_,
}


def _evaluate(expr: str, known: dict[str, int]) -> int | None:
    """The value of a constant integer expression of the header (numbers with U/UL suffixes,
    earlier constants, + - * << |), or None for anything else."""
    expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr)
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None

    def value(node: ast.expr) -> int | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return known.get(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = value(node.left), value(node.right)
            if left is None or right is None:
                return None
            return _BINOPS[type(node.op)](left, right)
        return None

    return value(tree)


@functools.cache
def _define_exprs() -> dict[str, str]:
    return dict(re.findall(r"^#define[ \t]+(TNA_\w+)[ \t]+(.+?)[ \t]*$", _header_text(), re.M))


@functools.cache
def defines() -> dict[str, int]:
    """Every numeric ``#define TNA_*`` constant of the header, in header order."""
    out: dict[str, int] = {}
    for name, expr in _define_exprs().items():
        v = _evaluate(expr, out)
        if v is not None:
            out[name] = v
    return out


def flags(prefix: str) -> dict[str, int]:
    """The flags (``#define NAME (1U << n)``) whose names start with ``prefix``: ``TNA_IF_``."""
    return {n: v for n, v in defines().items()
            if n.startswith(prefix) and "<<" in _define_exprs()[n]}


def __getattr__(name: str) -> int:
    """``abi.TNA_IF_EGRESS`` and every other ``#define TNA_*``: read from the header."""
    if name.startswith("TNA_"):
        try:
            return defines()[name]
        except KeyError:
            pass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- enums -------------------------------------------------------------------------------------

def _enum_body(name: str, text: str) -> str:
    body = re.search(rf"enum {name} \{{(.*?)\}};", text, re.S)
    if body is None:
        raise BuildMissing(f"{header_path()} has no enum {name}")
    return body[1]


@functools.cache
def enum(name: str) -> dict[str, int]:
    """The enumerators of ``enum name`` (every one has an explicit value in the header)."""
    return {m[1]: int(m[2], 0) for m in
            re.finditer(r"^\s*(\w+)\s*=\s*(0x[0-9a-fA-F]+|\d+)\s*,", _enum_body(name,
                                                                             _header_text()),
                        re.M)}


def _code_name(c_name: str) -> str:
    return c_name.removeprefix("TNA_").removeprefix("PUNT_").lower()


def _is_code(c_name: str) -> bool:
    return c_name != "TNA_NR_CODES_USED"


@functools.cache
def codes() -> dict[int, str]:
    """Counter code -> name: ``forwarded``, ``transmitted`` and the punt reasons."""
    return {v: _code_name(n) for n, v in enum("tna_code").items() if _is_code(n)}


@functools.cache
def descriptions() -> dict[str, str]:
    """Code name -> the header's comment for it, for ``tna stats`` and the docs."""
    body = _enum_body("tna_code", _raw_header_text())
    return {_code_name(m[1]): m[2].strip() for m in
            re.finditer(r"(TNA_\w+)\s*=\s*\d+\s*,\s*/\*(.*?)\*/", body) if _is_code(m[1])}


def code(name: str) -> int:
    return next(c for c, n in codes().items() if n == name)


@functools.cache
def verdicts() -> tuple[int, ...]:
    """The codes that count work done (forwarded, transmitted, ...): all but TNA_PUNT_*."""
    return tuple(v for n, v in enum("tna_code").items()
                 if _is_code(n) and not n.startswith("TNA_PUNT_"))


def punt_reasons() -> dict[int, str]:
    return {c: n for c, n in codes().items() if c not in verdicts()}


def max_ifaces() -> int:
    return defines()["TNA_MAX_IFACES"]


def nr_codes() -> int:
    return defines()["TNA_NR_CODES"]


# ---- structs -----------------------------------------------------------------------------------

CField = tuple[str, type]


@functools.cache
def struct_fields(name: str) -> list[CField]:
    """The members of ``struct name`` in order, as ctypes ``_fields_``."""
    # (a closing brace may carry attributes: "} __attribute__((aligned(4)));")
    body = re.search(rf"^struct {name} \{{(.*?)^\}}[^;\n]*;", _header_text(), re.S | re.M)
    if body is None:
        raise BuildMissing(f"{header_path()} has no struct {name}")
    out: list[CField] = []
    for m in re.finditer(r"^\s*((?:struct\s+)?\w+)\s+(\w+)(?:\[(\w+)\])?\s*;", body[1],
                         re.M):
        # a ctypes scalar, a struct of the header, or an array of one
        c_type: Any = (struct_type(m[1].split()[1]) if m[1].startswith("struct")
                       else C_TYPES[m[1]])
        if m[3] is not None:
            n = int(m[3]) if m[3].isdigit() else defines()[m[3]]
            c_type = c_type * n
        out.append((m[2], c_type))
    return out


def struct_names() -> list[str]:
    """Every ``struct tna_*`` the header defines."""
    return re.findall(r"^struct (tna_\w+) \{", _header_text(), re.M)


@functools.cache
def struct_type(name: str) -> type[ctypes.Structure]:
    """The ctypes type of ``struct name`` (``tna_fw_v4_key`` -> ``TnaFwV4Key``)."""
    known = {cls.__name__: cls for cls in _NAMED}
    py_name = "".join(part.capitalize() for part in name.split("_"))
    if py_name in known:
        return known[py_name]
    return type(py_name, (ctypes.Structure,), {"_fields_": struct_fields(name)})


def feature_fields() -> list[CField]:
    """The load-time features (``struct tna_features``), in order: (name, ctype)."""
    return struct_fields("tna_features")


class TnaIface(ctypes.Structure):
    _fields_ = struct_fields("tna_iface")


class TnaCounter(ctypes.Structure):
    _fields_ = struct_fields("tna_counter")


class TnaFeatures(ctypes.Structure):
    _fields_ = feature_fields()


class TnaFdbKey(ctypes.Structure):
    _fields_ = struct_fields("tna_fdb_key")


class TnaFdbEntry(ctypes.Structure):
    _fields_ = struct_fields("tna_fdb_entry")


class TnaConfig(ctypes.Structure):
    _fields_ = struct_fields("tna_config")


class TnaFwTable(ctypes.Structure):
    _fields_ = struct_fields("tna_fw_table")


class TnaFwRule(ctypes.Structure):
    _fields_ = struct_fields("tna_fw_rule")


class TnaBrport(ctypes.Structure):
    _fields_ = struct_fields("tna_brport")


# The structs other modules name as types; the rest are made on demand by struct_type().
_NAMED = (TnaIface, TnaCounter, TnaFeatures, TnaFdbKey, TnaFdbEntry, TnaConfig, TnaFwTable,
          TnaFwRule, TnaBrport)

FORWARDED, TRANSMITTED, BRIDGED, FW_DROPPED = (
    code("forwarded"), code("transmitted"), code("bridged"), code("fw_dropped"))
VERDICTS = verdicts()  # codes that count work done


def xdp_object() -> Path:
    if not XDP_OBJECT.exists():
        raise BuildMissing(f"{XDP_OBJECT} is missing: run 'make build'")
    return XDP_OBJECT
