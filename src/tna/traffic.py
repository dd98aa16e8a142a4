"""Small UDP/TCP senders and receivers run inside namespaces, for the demo and the tests.

Role in the flow: none in the data path.  ``python -m tna.traffic`` is started with
``ip netns exec``; :func:`udp` and :func:`tcp` drive a receiver in one namespace and a sender in
another and report what arrived, so a test can assert delivery without sleeping and hoping.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

READY = "ready"


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _udp_server(addr: str, port: int, count: int, timeout: float) -> int:
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
        s.bind((addr, port))
        s.settimeout(timeout)
        print(READY, flush=True)
        got = 0
        try:
            while got < count:
                s.recv(65535)
                got += 1
        except TimeoutError:
            pass
        return got


def _udp_client(addr: str, port: int, count: int, size: int) -> None:
    payload = b"u" * size
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(payload, (addr, port))
            time.sleep(0.0005)  # stay far below any queue limit: we test delivery, not rate


def _tcp_server(addr: str, port: int, timeout: float) -> int:
    with socket.socket(_family(addr), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1)
        s.settimeout(timeout)
        print(READY, flush=True)
        conn, _ = s.accept()
        with conn:
            conn.settimeout(timeout)
            total = 0
            while chunk := conn.recv(65536):
                total += len(chunk)
            return total


def _tcp_client(addr: str, port: int, size: int) -> None:
    with socket.create_connection((addr, port), timeout=5) as s:
        s.sendall(b"t" * size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tna.traffic")
    p.add_argument("role", choices=["udp-server", "udp-client", "tcp-server", "tcp-client"])
    p.add_argument("addr")
    p.add_argument("--port", type=int, default=5201)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args(argv)
    if a.role == "udp-server":
        print(_udp_server(a.addr, a.port, a.count, a.timeout))
    elif a.role == "udp-client":
        _udp_client(a.addr, a.port, a.count, a.size)
    elif a.role == "tcp-server":
        print(_tcp_server(a.addr, a.port, a.timeout))
    else:
        _tcp_client(a.addr, a.port, a.size)
    return 0


def _in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "tna.traffic", *args]


def _start_server(ns: str, *args: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(_in_ns(ns, *args), stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    if server.stdout.readline().strip() != READY:
        server.kill()
        raise RuntimeError(f"traffic server in {ns} did not start")
    return server


def _finish(server: subprocess.Popen[str], timeout: float) -> int:
    out, _ = server.communicate(timeout=timeout + 10)
    return int(out.strip() or 0)


def udp(src_ns: str, dst_ns: str, dst: str, count: int = 100, size: int = 64,
        port: int = 5201) -> int:
    """Send ``count`` datagrams from ``src_ns`` to ``dst``; return how many arrived."""
    server = _start_server(dst_ns, "udp-server", dst, "--port", str(port), "--count", str(count))
    try:
        subprocess.run(_in_ns(src_ns, "udp-client", dst, "--port", str(port), "--count",
                              str(count), "--size", str(size)), check=True, timeout=60)
        return _finish(server, 3.0)
    finally:
        server.kill()


def tcp(src_ns: str, dst_ns: str, dst: str, size: int = 1 << 20, port: int = 5202) -> int:
    """Send ``size`` bytes over one TCP connection; return how many bytes arrived."""
    server = _start_server(dst_ns, "tcp-server", dst, "--port", str(port))
    try:
        subprocess.run(_in_ns(src_ns, "tcp-client", dst, "--port", str(port), "--size",
                              str(size)), check=True, timeout=60)
        return _finish(server, 3.0)
    finally:
        server.kill()


if __name__ == "__main__":
    sys.exit(main())
