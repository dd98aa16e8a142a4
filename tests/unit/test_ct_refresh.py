"""The conntrack refresh shortcut's inputs: CONFIG_HZ from the kernel's configuration, and
the table's ct_hz only where msecs_to_jiffies() is ms / 1000 * HZ for every timeout (else 0:
the data path calls the kfunc for every packet, as before)."""

from __future__ import annotations

import gzip
from pathlib import Path

from tna.datapath.firewall import refresh_hz
from tna.introspect import kernel_hz

DEFAULTS_MS = (120_000, 30_000, 432_000_000, 300_000)


def test_kernel_hz_from_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "config.gz"
    with gzip.open(config, "wt") as f:
        f.write("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\nCONFIG_X=y\n")
    assert kernel_hz(str(config)) == 250
    assert kernel_hz(str(tmp_path / "absent.gz")) == 0
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    assert kernel_hz(str(tmp_path / "bad.gz")) == 0


def test_refresh_hz_only_where_the_division_is_exact() -> None:
    for hz in (100, 250, 1000, 2000):
        assert refresh_hz(hz, DEFAULTS_MS) == hz
    assert refresh_hz(0, DEFAULTS_MS) == 0  # unknown
    assert refresh_hz(300, DEFAULTS_MS) == 0  # msecs_to_jiffies() rounds a product
    assert refresh_hz(250, (*DEFAULTS_MS[:3], 300_500)) == 0  # not whole seconds
    assert refresh_hz(1000, (2_200_000_000,)) == 0  # beyond the kfunc's int range
    assert refresh_hz(2000, (1_100_000_000,)) == 0  # jiffies beyond INT_MAX
