"""A full FDB mirror leaves further entries to Linux (a mirror miss punts) instead of failing
the whole sync: more than TNA_FDB_MAX entries on a bridge must not break ``tna apply``."""

from __future__ import annotations

import errno

import pytest

from tna.datapath import fdb, libbpf
from tna.model import FdbEntry


class FullMap:
    def __init__(self, err: int = errno.E2BIG) -> None:
        self.err = err
        self.updates = 0

    def lookup(self, key: bytes) -> bytes | None:
        return None

    def update(self, key: bytes, value: bytes) -> None:
        self.updates += 1
        raise libbpf.LibbpfError(self.err, "bpf_map_update_elem")


def _entry() -> FdbEntry:
    return FdbEntry(bridge=5, ifindex=7, mac="02:00:10:00:00:01", state="static")


def test_a_full_mirror_counts_the_entry_and_goes_on() -> None:
    result = fdb.SyncResult()
    m = FullMap()
    fdb.FdbMirror._put(m, b"k", _entry(), result,  # type: ignore[arg-type]
                       kernel_updated_ns=None)
    assert m.updates == 1 and result.full == 1 and result.written == 0


def test_other_errors_still_fail() -> None:  # positive control: the fake map does fail
    with pytest.raises(libbpf.LibbpfError):
        fdb.FdbMirror._put(FullMap(errno.EPERM), b"k", _entry(),  # type: ignore[arg-type]
                           fdb.SyncResult(), kernel_updated_ns=None)
