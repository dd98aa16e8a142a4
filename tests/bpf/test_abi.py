"""C and Python agree on the data-path ABI: struct layouts (from the object's BTF) and codes."""

from __future__ import annotations

import ctypes
import re
from typing import Any

import pytest

from tna import abi
from tna.datapath import libbpf

BTF_KIND_STRUCT = 4


def _resolve_size(lib: Any, btf: int, type_id: int) -> int:
    fn = lib.btf__resolve_size  # not bound by tna.datapath.libbpf: declared here
    fn.restype, fn.argtypes = ctypes.c_int64, [ctypes.c_void_p, ctypes.c_uint32]
    return libbpf.check(fn(btf, type_id), "btf__resolve_size")


def btf_struct(name: str) -> tuple[int, dict[str, tuple[int, int]]]:
    """(size, member -> (byte offset, byte size)) of ``struct name`` in the production
    object's BTF, members in order."""
    lib = libbpf.lib()
    btf = libbpf.check_ptr(lib.btf__parse_elf(str(abi.xdp_object()).encode(), None), "btf")
    try:
        type_id = libbpf.check(lib.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_STRUCT),
                               name)
        t = lib.btf__type_by_id(btf, type_id).contents
        members = (libbpf.BtfMember * (t.info & 0xFFFF)).from_address(
            ctypes.addressof(t) + ctypes.sizeof(libbpf.BtfType))
        return t.size, {lib.btf__name_by_offset(btf, m.name_off).decode():
                        (m.offset // 8, _resolve_size(lib, btf, m.type)) for m in members}
    finally:
        lib.btf__free(btf)


# every struct of the header; all of them are in the object's BTF (map keys and values)
STRUCTS = abi.struct_names()


def test_header_structs_are_known() -> None:
    assert {"tna_iface", "tna_counter", "tna_features", "tna_fdb_key", "tna_fdb_entry",
            "tna_brport", "tna_config", "tna_fw_table", "tna_fw_rule", "tna_fw_if_key",
            "tna_fw_bits", "tna_fw_v4_key", "tna_fw_v6_key"} <= set(STRUCTS)


@pytest.mark.parametrize("c_name", STRUCTS)
def test_struct_layouts_match_btf(c_name: str) -> None:
    py_type = abi.struct_type(c_name)
    size, members = btf_struct(c_name)
    assert ctypes.sizeof(py_type) == size
    assert [(name, (getattr(py_type, name).offset, getattr(py_type, name).size))
            for name, *_ in py_type._fields_] == list(members.items())


def test_named_struct_types_are_the_derived_ones() -> None:
    for py_type in (abi.TnaIface, abi.TnaCounter, abi.TnaFeatures, abi.TnaFdbKey,
                    abi.TnaFdbEntry, abi.TnaConfig, abi.TnaFwTable, abi.TnaFwRule,
                    abi.TnaBrport):
        c_name = "_".join(w.lower() for w in re.findall(r"[A-Z][a-z0-9]*", py_type.__name__))
        assert abi.struct_type(c_name) is py_type
        assert py_type._fields_ == abi.struct_fields(c_name)


def test_feature_fields_are_the_btf_feature_block_in_order() -> None:
    size, members = btf_struct("tna_features")
    fields = abi.feature_fields()
    assert [name for name, _ in fields] == list(members)
    assert all(ctype is ctypes.c_uint8 for _, ctype in fields)  # one byte per switch
    assert ctypes.sizeof(abi.TnaFeatures) == size == len(fields)


def test_shipped_header_is_the_source_header() -> None:
    """Python parses the copy the build ships next to the object: it must be current."""
    assert abi.HEADER.exists(), "run 'make build'"
    assert abi.HEADER.read_text() == abi.SOURCE_HEADER.read_text()


def _c_flags(prefix: str) -> dict[str, int]:
    """``#define NAME (1U << n)`` lines of the header, read independently of tna.abi."""
    return {m[1]: 1 << int(m[2]) for m in re.finditer(
        rf"^#define ({prefix}\w+) \(1U << (\d+)\)", abi.HEADER.read_text(), re.M)}


@pytest.mark.parametrize(("prefix", "width"), [("TNA_IF_", 16), ("TNA_FDB_", 16),
                                               ("TNA_BRPORT_", 16)])
def test_flags_match_the_header(prefix: str, width: int) -> None:
    c_flags = _c_flags(prefix)
    assert c_flags, prefix
    assert abi.flags(prefix) == c_flags
    for name, value in c_flags.items():
        assert getattr(abi, name) == value, name
    assert len(set(c_flags.values())) == len(c_flags), "two flags share a bit"
    assert max(c_flags.values()) < 1 << width, "a flag does not fit its __u16 field"


def test_every_define_is_an_attribute() -> None:
    names = re.findall(r"^#define (TNA_\w+) +[(\d]", abi.HEADER.read_text(), re.M)
    assert names and set(names) == set(abi.defines())
    assert all(getattr(abi, n) == v for n, v in abi.defines().items())
    assert abi.TNA_FW_MAX_RULES == abi.TNA_FW_WORDS * 64
    with pytest.raises(AttributeError):
        abi.TNA_NO_SUCH_FLAG  # noqa: B018


def test_codes_are_the_header_enum() -> None:
    body = re.search(r"enum tna_code \{(.*?)\};", abi.HEADER.read_text(), re.S)
    assert body is not None
    c_codes = dict(re.findall(r"^\s*(TNA_\w+) = (\d+),", body[1], re.M))
    assert abi.enum("tna_code") == {n: int(v) for n, v in c_codes.items()}
    assert c_codes.pop("TNA_NR_CODES_USED") == str(len(abi.codes()))
    assert {int(v): n.removeprefix("TNA_").removeprefix("PUNT_").lower()
            for n, v in c_codes.items()} == abi.codes()
    verdicts = {int(v) for n, v in c_codes.items() if not n.startswith("TNA_PUNT_")}
    assert set(abi.VERDICTS) == verdicts == {abi.FORWARDED, abi.TRANSMITTED, abi.BRIDGED,
                                             abi.FW_DROPPED, abi.code("nat_original"),
                                             abi.code("nat_reply")}
    assert set(abi.punt_reasons()) == set(abi.codes()) - verdicts


def test_codes_are_dense_unique_and_fit() -> None:
    codes = abi.codes()
    assert sorted(codes) == list(range(len(codes)))
    assert len(set(codes.values())) == len(codes)
    assert len(codes) <= abi.nr_codes()
    assert (codes[abi.FORWARDED], codes[abi.TRANSMITTED]) == ("forwarded", "transmitted")


def test_every_code_is_described() -> None:
    assert set(abi.descriptions()) == set(abi.codes().values())
    assert all(abi.descriptions().values())


def test_every_code_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    missing = [n for n in abi.punt_reasons().values() if f"`{n}`" not in doc]
    assert missing == []


def test_bridged_code() -> None:
    assert abi.codes()[abi.BRIDGED] == "bridged"
    assert abi.BRIDGED not in abi.punt_reasons()


def test_firewall_limits_agree() -> None:
    from tna.firewall import tables

    d = abi.defines()
    limits = (d["TNA_FW_WORDS"] * 64, d["TNA_FW_MAX_CLASSES"], d["TNA_FW_MAX_STEPS"])
    assert limits == (tables.MAX_RULES, tables.MAX_CLASSES, tables.MAX_STEPS)
    body = re.search(r"enum tna_fw_field \{(.*?)\};", abi.HEADER.read_text(), re.S)
    assert body is not None
    c_fields = re.findall(r"^\s*TNA_FW_(\w+) = \d+,", body[1], re.M)
    assert [f.upper() for f in tables.FIELDS] == c_fields[:len(tables.FIELDS)]
    assert abi.enum("tna_fw_field") == {f"TNA_FW_{f.upper()}": i
                                        for i, f in enumerate(tables.FIELDS)} | {
        "TNA_FW_NR_FIELDS": len(tables.FIELDS)}
    verdicts = (tables.VERDICT_ACCEPT, tables.VERDICT_DROP, tables.VERDICT_PUNT,
                tables.VERDICT_SKIP)
    assert verdicts == tuple(abi.enum("tna_fw_verdict").values()) == (1, 2, 3, 4)
