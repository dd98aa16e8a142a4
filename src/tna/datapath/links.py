"""Attaching a loaded program to an interface through a BPF link, and taking it off.

Role in the flow: the data path's last step.  Native XDP where the driver has it, generic only
where native is impossible; detaching tolerates a device that is already gone.
"""

from __future__ import annotations

import errno

from tna.datapath import libbpf
from tna.datapath.libbpf import LibbpfError
from tna.datapath.pins import DatapathError


def create_link(ifindex: int, prog_fd: int) -> int:
    """Native XDP where the driver has it; generic only when native is impossible."""
    try:
        return libbpf.xdp_link_create(prog_fd, ifindex, libbpf.XDP_FLAGS_DRV_MODE)
    except LibbpfError as e:
        if e.errno == errno.EBUSY:
            raise DatapathError(f"ifindex {ifindex} already has an XDP program") from e
        # EOPNOTSUPP/EINVAL: no native XDP; ERANGE: MTU beyond what a native program takes
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ERANGE):
            raise
    return libbpf.xdp_link_create(prog_fd, ifindex, libbpf.XDP_FLAGS_SKB_MODE)


def detach_link(link_fd: int) -> None:
    try:
        libbpf.link_detach(link_fd)
    except LibbpfError as e:
        if e.errno not in (errno.ENOLINK, errno.EINVAL, errno.ENODEV):  # device already gone
            raise
