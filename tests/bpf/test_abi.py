"""C and Python agree on the data-path ABI: struct layouts (from the object's BTF) and codes."""

from __future__ import annotations

import ctypes
import re

import pytest

from tna import abi
from tna.datapath import libbpf

BTF_KIND_STRUCT = 4


def btf_struct_layout(name: str) -> tuple[int, dict[str, int]]:
    """(size, member -> byte offset) of ``struct name`` in the production object's BTF."""
    lib = libbpf.lib()
    btf = libbpf.check_ptr(lib.btf__parse_elf(str(abi.xdp_object()).encode(), None), "btf")
    try:
        type_id = libbpf.check(lib.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_STRUCT),
                               name)
        t = lib.btf__type_by_id(btf, type_id).contents
        vlen = t.info & 0xFFFF
        members = (libbpf.BtfMember * vlen).from_address(
            ctypes.addressof(t) + ctypes.sizeof(libbpf.BtfType))
        return t.size, {lib.btf__name_by_offset(btf, m.name_off).decode(): m.offset // 8
                        for m in members}
    finally:
        lib.btf__free(btf)


@pytest.mark.parametrize(("c_name", "py_type"), [
    ("tna_iface", abi.TnaIface), ("tna_counter", abi.TnaCounter),
    ("tna_features", abi.TnaFeatures), ("tna_fdb_key", abi.TnaFdbKey),
    ("tna_fdb_entry", abi.TnaFdbEntry), ("tna_brport", abi.TnaBrport),
    ("tna_config", abi.TnaConfig), ("tna_fw_table", abi.TnaFwTable),
    ("tna_fw_rule", abi.TnaFwRule),
])
def test_struct_layouts_match_btf(c_name: str, py_type: type[ctypes.Structure]) -> None:
    size, members = btf_struct_layout(c_name)
    assert ctypes.sizeof(py_type) == size
    assert {name: getattr(py_type, name).offset for name, *_ in py_type._fields_} == members


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


def test_bridged_code_and_flags() -> None:
    assert abi.codes()[abi.BRIDGED] == "bridged"
    assert abi.BRIDGED not in abi.punt_reasons()
    text = abi.HEADER.read_text()
    for name in ("TNA_IF_BRIDGE", "TNA_IF_NO_BRIDGE_IPV4", "TNA_IF_NO_BRIDGE_IPV6",
                 "TNA_FDB_LOCAL", "TNA_FDB_STATIC", "TNA_FDB_STICKY", "TNA_FDB_MOVED",
                 "TNA_BRPORT_FORWARDING", "TNA_BRPORT_PUNT"):
        shift = int(re.search(rf"#define {name} \(1U << (\d+)\)", text)[1])  # type: ignore[index]
        assert getattr(abi, name) == 1 << shift, name


def test_firewall_limits_agree() -> None:
    from tna.firewall import tables

    d = abi.defines()
    limits = (d["TNA_FW_WORDS"] * 64, d["TNA_FW_MAX_CLASSES"], d["TNA_FW_MAX_STEPS"])
    assert limits == (tables.MAX_RULES, tables.MAX_CLASSES, tables.MAX_STEPS)
    body = re.search(r"enum tna_fw_field \{(.*?)\};", abi.HEADER.read_text(), re.S)
    assert body is not None
    c_fields = re.findall(r"^\s*TNA_FW_(\w+) = \d+,", body[1], re.M)
    assert [f.upper() for f in tables.FIELDS] == c_fields[:len(tables.FIELDS)]
    verdicts = (tables.VERDICT_ACCEPT, tables.VERDICT_DROP, tables.VERDICT_PUNT,
                tables.VERDICT_SKIP)
    assert verdicts == (1, 2, 3, 4)
