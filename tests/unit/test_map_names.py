"""Shared map names fit the kernel's: it keeps 15 characters of a map's name, and TNA finds the
maps of a running program by the names the kernel reports (tna.datapath.pins.tna_maps)."""

from __future__ import annotations

import re
from pathlib import Path

from tna.datapath.pins import PRIVATE_MAPS
from tna.datapath.program import SHARED_MAPS

BPF = Path(__file__).resolve().parents[2] / "bpf"
KERNEL_NAME_LEN = 15  # BPF_OBJ_NAME_LEN - 1


def test_shared_map_names_survive_the_kernels_truncation() -> None:
    assert SHARED_MAPS  # control: there is something to check
    assert [n for n in SHARED_MAPS if len(n) > KERNEL_NAME_LEN] == []


def test_every_map_the_program_declares_has_a_kernel_sized_name() -> None:
    declared = {m for f in (BPF / "lib").glob("*.h")
                for m in re.findall(r"\}\s*(tna_\w+)\s+SEC\(\"\.maps\"\)", f.read_text())}
    assert "tna_ifaces" in declared  # control: the pattern finds the declarations
    # each map is shared (pinned, one per namespace) or the program's own: nothing unsorted
    assert declared == set(SHARED_MAPS) | set(PRIVATE_MAPS)
    assert [n for n in declared if len(n) > KERNEL_NAME_LEN] == []
