"""Snapshots for planner unit tests: the recorded router and small variations of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tna.model import Snapshot


def with_link(snap: Snapshot, ifname: str, **changes: Any) -> Snapshot:
    """``snap`` with the link ``ifname`` changed as ``changes`` say."""
    links = tuple(replace(lk, **changes) if lk.ifname == ifname else lk for lk in snap.links)
    return replace(snap, links=links)
