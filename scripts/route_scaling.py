"""Program-only cost as the FIB grows (docs/benchmarks.md, "Cost as the routing table grows").

Builds the router-v4 (family 4) or router-v6 (6) benchmark scenario, applies TNA, then for each
N in SIZES loads routes up to N via the receiver with ``ip -batch`` (``tna.bench.prefixes``:
a public-table-like prefix-length mix, random prefixes: the tables of ``tna.bench.scaling``)
and times, through BPF_PROG_TEST_RUN (repeat=1), the empty program, TNA's program as loaded
and the bare fib router on 256 frames to random addresses inside installed routes, interleaved in 10 chunks; prints one JSON line per N (medians, ns per
run including the harness: subtract "empty").  Root; the namespaces are removed on exit.

    PYTHONPATH=src python3 scripts/route_scaling.py 4 10,100,1000,10000,100000,1000000 4000 > v4.jsonl
    PYTHONPATH=src python3 scripts/route_scaling.py 6 10,...,1000000 4000 > v6.jsonl
    python3 scripts/plot_route_scaling.py docs/route-scaling.png v4.jsonl v6.jsonl
"""
import json, os, random, subprocess, sys, tempfile
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from tna.bench import micro
from tna.bench.bpfobj import BpfObject, Park, ifindex_of
from tna.bench.prefixes import Prefixes
from tna.bench.scenarios import SCENARIOS, TNA, Options
from tna.datapath import libbpf, loader
from tna.netns import entered
from tna.testbed import Testbed

fam = int(sys.argv[1]); sizes = [int(x) for x in sys.argv[2].split(",")]; iters = int(sys.argv[3])
rng = random.Random(1)
prefixes = Prefixes(fam)  # the tables of the end-to-end sweep (tna.bench.scaling routes4/6)
res = []
with Testbed(prefix="pfs") as bed:
    scn = SCENARIOS["router-v4" if fam == 4 else "router-v6"](bed, Options())
    park = Park(bed)
    try:
        scn.build()
        scn.enter(TNA)
        routes = prefixes.nets
        with entered(scn.dut):
            ingress = ifindex_of(scn.ingress_if)
            r1mac = json.loads(subprocess.run(["ip", "-j", "link", "show", scn.ingress_if], capture_output=True, text=True).stdout)[0]["address"]
            a = loader.attached()
            prog = [x for x in a if x.ifindex == ingress][0]
            tfd = libbpf.prog_get_fd_by_id(prog.prog_id)
            sink = BpfObject("bench_sink"); refs = BpfObject("bench_sol", scn.sol_config())
            links = [park.attach(sink.prog_fd("bench_nop")), park.attach(tfd), park.attach(refs.prog_fd("bench_fib"))]
            gw = "10.2.0.2" if fam == 4 else "fd00:2::2"
            for n in sizes:
                new = prefixes.grow(n)
                with tempfile.NamedTemporaryFile("w", delete=False) as f:
                    for net in new:
                        f.write(f"route add {net} via {gw}\n")
                subprocess.run(["ip", f"-{fam}", "-force", "-batch", f.name], check=True)
                os.unlink(f.name)
                pk = []
                for _ in range(256):
                    net = rng.choice(routes)
                    dst = str(net.network_address + rng.randrange(1, min(net.num_addresses, 1 << 20)))
                    ip = (IP(src="10.1.0.2", dst=dst, ttl=64) if fam == 4 else IPv6(src="fd00:1::2", dst=dst, hlim=64))
                    p = Ether(dst=r1mac, src="02:00:00:00:00:11") / ip / UDP(sport=1000, dport=2000)
                    p = p / Raw(b"x" * max(0, 64 - len(p)))
                    pk.append(bytes(p))
                row = {"routes": n}
                acc = {}
                for chunk in range(10):  # interleaved, so load bursts hit all three alike
                    for label, fd in (("empty", sink.prog_fd("bench_nop")), ("tna", tfd), ("fib", refs.prog_fd("bench_fib"))):
                        t = micro.time_program(fd, pk, ingress, iters // 10)
                        acc.setdefault(label, []).append(t.ns_run)
                        row[label + "_v"] = t.verdicts
                import statistics
                for label, xs in acc.items():
                    row[label] = round(statistics.median(xs), 1)
                print(json.dumps(row), flush=True); res.append(row)
            for l in links: l.close()
            sink.close(); refs.close(); os.close(tfd)
    finally:
        scn.leave(TNA); park.close(); scn.close()
