"""Run tna bench's traffic generator (bench_gen) on its own, for the bench tests: what it
sends, frame by frame, from one template."""

from __future__ import annotations

from tna import netns
from tna.bench import frames
from tna.bench.bpfobj import BpfObject, Park, ifindex_of
from tna.bench.generator import gen_config
from tna.datapath import libbpf
from tna.testbed import Testbed

XDP_TX = 3


def generated(prefix: str, template: bytes, var: frames.Variation | None,
              count: int) -> list[bytes]:
    """The first ``count`` frames bench_gen makes of ``template`` with ``var`` (each run must
    end in XDP_TX, as it does when the generator sends)."""
    out = []
    with Testbed(prefix=prefix) as bed:
        ns = bed.ns("gen")
        bed.veth(ns, "ga", ns, "gb")
        obj = BpfObject("bench_gen", gen_config(template, var))
        park = Park(bed)
        try:
            fd = obj.prog_fd("bench_gen")
            park.attach(fd)
            with netns.entered(ns):
                ifindex = ifindex_of("ga")
                for i in range(count):
                    verdict, frame, _ = libbpf.test_run(fd, template, ingress_ifindex=ifindex)
                    assert verdict == XDP_TX, f"frame {i}: verdict {verdict}"
                    out.append(frame)
        finally:
            park.close()
            obj.close()
    return out
