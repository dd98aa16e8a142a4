"""Data-path writes without a reconciliation, for BPF tests that run programs unattached
(BPF_PROG_TEST_RUN): load a program, fill single maps, read the firewall's counters."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from tna.datapath import status
from tna.datapath.maps import IfaceMaps, NamespaceMaps
from tna.datapath.pins import ensure_bpffs, pin_dir
from tna.datapath.program import Program
from tna.plan.types import Features, Namespace, Port


def load_for_test(features: Features, obj_path: str | None = None) -> Program:
    """A program whose maps are pinned in this namespace's directory."""
    ensure_bpffs()
    os.makedirs(pin_dir(), exist_ok=True)
    return Program(features, obj_path=obj_path)


def sync_ports_for_test(ports: Iterable[Port]) -> None:
    """Write map entries for ``ports`` without touching programs."""
    with contextlib.closing(IfaceMaps()) as maps:
        for p in ports:
            maps.write(p.ifindex, p.mac, p.flags)


def sync_firewall_for_test(namespace: Namespace) -> None:
    """Write the firewall tables of ``namespace`` (a new generation) without touching programs."""
    with contextlib.closing(NamespaceMaps()) as ns:
        ns.write_firewall(namespace)


def sync_namespace_for_test(namespace: Namespace) -> None:
    """Write the namespace-wide maps as a reconciliation would, without touching programs."""
    with contextlib.closing(NamespaceMaps()) as ns:
        ns.restrict(namespace)
        ns.relax(namespace)


def firewall_counters(family: int) -> list[tuple[int, int]]:
    """(packets, bytes) per flattened rule of the table in use for ``family``."""
    return status.firewall_state(family)[1]
