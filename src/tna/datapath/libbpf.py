"""A thin ctypes binding over ``libbpf.so.1``: only the calls TNA makes.

Role in the flow: the loader, map access and the BPF tests go through here; nothing else talks
to the bpf(2) syscall.  libbpf >= 1.0 returns ``-errno`` from int calls and NULL + errno from
pointer calls; both become :class:`LibbpfError`.  libbpf's own log lines are captured (not
printed) so a failed load can say what the verifier said.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import os
from collections import deque
from collections.abc import Callable
from typing import Any

BPF_XDP = 37  # enum bpf_attach_type
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_ATTACHED_DRV, XDP_ATTACHED_SKB, XDP_ATTACHED_HW, XDP_ATTACHED_MULTI = 1, 2, 3, 4
BPF_ANY = 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

c_void_p = ctypes.c_void_p


class LibbpfError(OSError):
    """A libbpf call that failed; ``log`` holds libbpf's last messages."""

    def __init__(self, err: int, what: str, log: str = "") -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.log = log


class LinkCreateOpts(ctypes.Structure):
    # struct bpf_link_create_opts, cut after 'flags': libbpf takes a shorter 'sz'.
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class XdpQueryOpts(ctypes.Structure):
    # struct bpf_xdp_query_opts, cut after 'attach_mode'
    _fields_ = [("sz", ctypes.c_size_t), ("prog_id", ctypes.c_uint32),
                ("drv_prog_id", ctypes.c_uint32), ("hw_prog_id", ctypes.c_uint32),
                ("skb_prog_id", ctypes.c_uint32), ("attach_mode", ctypes.c_uint8)]


class ProgQueryOpts(ctypes.Structure):
    # struct bpf_prog_query_opts, cut after 'prog_cnt'
    _fields_ = [("sz", ctypes.c_size_t), ("query_flags", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32), ("prog_ids", c_void_p),
                ("prog_cnt", ctypes.c_uint32)]


class TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class XdpMd(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint32),
        ("data_end", ctypes.c_uint32),
        ("data_meta", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("rx_queue_index", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
    ]


class ProgInfo(ctypes.Structure):
    # The head of struct bpf_prog_info; the kernel fills as much as we say we have.
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
    ]


class MapInfo(ctypes.Structure):
    # The head of struct bpf_map_info.
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


class LinkInfo(ctypes.Structure):
    # struct bpf_link_info with only the xdp member of its union.
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("xdp_ifindex", ctypes.c_uint32),
        ("_rest", ctypes.c_uint8 * 60),
    ]


class BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32),
                ("size", ctypes.c_uint32)]


class BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32),
                ("offset", ctypes.c_uint32)]


# ring_buffer_sample_fn: (ctx, data, size) -> 0 to go on
RING_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, c_void_p, c_void_p, ctypes.c_size_t)
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, c_void_p)
_log: deque[str] = deque(maxlen=200)
_lib: Any = None
_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, c_void_p]


@_PRINT_FN
def _capture(level: int, fmt: bytes, args: int) -> int:
    buf = ctypes.create_string_buffer(4096)
    _libc.vsnprintf(buf, len(buf), fmt, args)
    _log.append(buf.value.decode(errors="replace").rstrip("\n"))
    return 0


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_object__open_file": (c_void_p, [ctypes.c_char_p, c_void_p]),
    "bpf_object__load": (ctypes.c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, ctypes.c_char_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, ctypes.c_char_p]),
    "bpf_object__btf": (c_void_p, [c_void_p]),
    "bpf_program__fd": (ctypes.c_int, [c_void_p]),
    "bpf_map__fd": (ctypes.c_int, [c_void_p]),
    "bpf_map__set_initial_value": (ctypes.c_int, [c_void_p, c_void_p, ctypes.c_size_t]),
    "bpf_map__reuse_fd": (ctypes.c_int, [c_void_p, ctypes.c_int]),
    "bpf_map__value_size": (ctypes.c_uint32, [c_void_p]),
    "bpf_map__key_size": (ctypes.c_uint32, [c_void_p]),
    "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, c_void_p]),
    "bpf_map_update_batch": (ctypes.c_int, [ctypes.c_int, c_void_p, c_void_p,
                                            ctypes.POINTER(ctypes.c_uint32), c_void_p]),
    "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, c_void_p, c_void_p]),
    "bpf_obj_pin": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p]),
    "bpf_obj_get": (ctypes.c_int, [ctypes.c_char_p]),
    "bpf_obj_get_info_by_fd": (ctypes.c_int, [ctypes.c_int, c_void_p,
                                              ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_link_create": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_int, c_void_p]),
    "bpf_xdp_query": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, c_void_p]),
    "bpf_prog_query_opts": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, c_void_p]),
    "bpf_link_update": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, c_void_p]),
    "bpf_link_detach": (ctypes.c_int, [ctypes.c_int]),
    "bpf_prog_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_link_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_link_get_next_id": (ctypes.c_int, [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_map_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_prog_test_run_opts": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(TestRunOpts)]),
    "ring_buffer__new": (c_void_p, [ctypes.c_int, RING_SAMPLE_FN, c_void_p, c_void_p]),
    "ring_buffer__poll": (ctypes.c_int, [c_void_p, ctypes.c_int]),
    "ring_buffer__consume": (ctypes.c_int, [c_void_p]),
    "ring_buffer__free": (None, [c_void_p]),
    "libbpf_num_possible_cpus": (ctypes.c_int, []),
    "libbpf_set_print": (c_void_p, [_PRINT_FN]),
    "btf__parse_elf": (c_void_p, [ctypes.c_char_p, c_void_p]),
    "btf__free": (None, [c_void_p]),
    "btf__find_by_name_kind": (ctypes.c_int32, [c_void_p, ctypes.c_char_p, ctypes.c_uint32]),
    "btf__type_by_id": (ctypes.POINTER(BtfType), [c_void_p, ctypes.c_uint32]),
    "btf__name_by_offset": (ctypes.c_char_p, [c_void_p, ctypes.c_uint32]),
}


def lib() -> Any:
    """The loaded library, with argument types set (loaded on first use)."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            handle = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError:
            handle = ctypes.CDLL(name, use_errno=True)
        for fn, (restype, argtypes) in _SIGNATURES.items():
            func = getattr(handle, fn)
            func.restype, func.argtypes = restype, argtypes
        handle.libbpf_set_print(_capture)
        _lib = handle
    return _lib


def recent_log(lines: int = 30) -> str:
    return "\n".join(list(_log)[-lines:])


def check(ret: int, what: str) -> int:
    """Raise for a negative libbpf return, else pass it through."""
    if ret < 0:
        raise LibbpfError(-ret, what, recent_log())
    return ret


def check_ptr(ptr: int | None, what: str) -> int:
    if not ptr:
        raise LibbpfError(ctypes.get_errno() or errno_mod.EINVAL, what, recent_log())
    return ptr


def num_possible_cpus() -> int:
    return check(lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def obj_get(path: str) -> int:
    return check(lib().bpf_obj_get(path.encode()), f"bpf_obj_get({path})")


def obj_pin(fd: int, path: str) -> None:
    check(lib().bpf_obj_pin(fd, path.encode()), f"bpf_obj_pin({path})")


def prog_info(fd: int) -> ProgInfo:
    info = ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
          "bpf_obj_get_info_by_fd(prog)")
    return info


def prog_map_ids(fd: int, most: int = 64) -> list[int]:
    """Ids of the maps a loaded program uses."""
    ids = (ctypes.c_uint32 * most)()
    info = ProgInfo(nr_map_ids=most, map_ids=ctypes.addressof(ids))
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
          "bpf_obj_get_info_by_fd(prog maps)")
    if info.nr_map_ids > most:  # the kernel says how many there are: ask again for all
        return prog_map_ids(fd, info.nr_map_ids)
    return list(ids[:info.nr_map_ids])


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
          "bpf_obj_get_info_by_fd(map)")
    return info


def map_get_fd_by_id(map_id: int) -> int:
    return check(lib().bpf_map_get_fd_by_id(map_id), f"bpf_map_get_fd_by_id({map_id})")


def link_info(fd: int) -> LinkInfo:
    info = LinkInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
          "bpf_obj_get_info_by_fd(link)")
    return info


def xdp_link_create(prog_fd: int, ifindex: int, flags: int) -> int:
    opts = LinkCreateOpts(sz=ctypes.sizeof(LinkCreateOpts), flags=flags)
    return check(lib().bpf_link_create(prog_fd, ifindex, BPF_XDP, ctypes.byref(opts)),
                 f"attach XDP to ifindex {ifindex}")


def xdp_query(ifindex: int) -> XdpQueryOpts:
    """The XDP programs attached to ``ifindex`` and how (``XDP_ATTACHED_*``)."""
    opts = XdpQueryOpts(sz=ctypes.sizeof(XdpQueryOpts))
    check(lib().bpf_xdp_query(ifindex, 0, ctypes.byref(opts)), f"query XDP of ifindex {ifindex}")
    return opts


def prog_count(target: int, attach_type: int) -> int:
    """How many programs are attached to ``target`` (an ifindex for tcx) at ``attach_type``."""
    opts = ProgQueryOpts(sz=ctypes.sizeof(ProgQueryOpts))
    check(lib().bpf_prog_query_opts(target, attach_type, ctypes.byref(opts)),
          f"query programs of {target}")
    return int(opts.prog_cnt)


def link_update(link_fd: int, prog_fd: int) -> None:
    check(lib().bpf_link_update(link_fd, prog_fd, None), "bpf_link_update")


def link_detach(link_fd: int) -> None:
    check(lib().bpf_link_detach(link_fd), "bpf_link_detach")


def link_ids() -> list[int]:
    """Ids of every BPF link on the machine (all namespaces)."""
    out: list[int] = []
    nxt = ctypes.c_uint32(0)
    while lib().bpf_link_get_next_id(nxt.value, ctypes.byref(nxt)) == 0:
        out.append(nxt.value)
    return out


def link_get_fd_by_id(link_id: int) -> int:
    return check(lib().bpf_link_get_fd_by_id(link_id), f"bpf_link_get_fd_by_id({link_id})")


def prog_get_fd_by_id(prog_id: int) -> int:
    return check(lib().bpf_prog_get_fd_by_id(prog_id), f"bpf_prog_get_fd_by_id({prog_id})")


class Map:
    """Fixed-size key/value access to one map fd; per-CPU maps return one value per CPU."""

    def __init__(self, fd: int, key_size: int, value_size: int, percpu: bool = False) -> None:
        self.fd, self.key_size, self.value_size, self.percpu = fd, key_size, value_size, percpu
        self._slot = (value_size + 7) // 8 * 8  # the kernel rounds per-CPU values to 8 bytes
        self._ncpus = num_possible_cpus() if percpu else 1

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        buf = value if not self.percpu else b"".join(
            value.ljust(self._slot, b"\0") for _ in range(self._ncpus))
        check(lib().bpf_map_update_elem(self.fd, key, buf, flags), "bpf_map_update_elem")

    def update_batch(self, keys: bytes, values: bytes, count: int) -> None:
        """Write ``count`` entries in one call (array maps): keys and values concatenated;
        per-CPU values come with one slot per CPU each, as the kernel lays them out."""
        done = 0
        while done < count:
            n = ctypes.c_uint32(count - done)
            ks, vs = self.key_size, (self._slot * self._ncpus if self.percpu else self.value_size)
            check(lib().bpf_map_update_batch(self.fd, keys[done * ks:], values[done * vs:],
                                             ctypes.byref(n), None), "bpf_map_update_batch")
            if n.value == 0:
                raise LibbpfError(errno_mod.EIO, "bpf_map_update_batch made no progress")
            done += n.value

    def lookup(self, key: bytes) -> bytes | None:
        out = ctypes.create_string_buffer(self._slot * self._ncpus)
        ret = lib().bpf_map_lookup_elem(self.fd, key, out)
        if ret == -errno_mod.ENOENT:
            return None
        check(ret, "bpf_map_lookup_elem")
        return out.raw

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        raw = self.lookup(key) or b""
        return [raw[i * self._slot:i * self._slot + self.value_size]
                for i in range(len(raw) // self._slot)]

    def delete(self, key: bytes) -> bool:
        ret = lib().bpf_map_delete_elem(self.fd, key)
        if ret == -errno_mod.ENOENT:
            return False
        check(ret, "bpf_map_delete_elem")
        return True

    def all_keys(self) -> list[bytes]:
        out, key = [], None
        nxt = ctypes.create_string_buffer(self.key_size)
        while lib().bpf_map_get_next_key(self.fd, key, nxt) == 0:
            key = nxt.raw
            out.append(key)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def test_run(prog_fd: int, packet: bytes, *, ingress_ifindex: int = 0, repeat: int = 1,
             flags: int = 0, batch_size: int = 0) -> tuple[int, bytes, int]:
    """BPF_PROG_TEST_RUN on an XDP program: (verdict, output frame, ns per run)."""
    data_out = ctypes.create_string_buffer(max(len(packet) + 512, 4096))
    ctx = XdpMd(data_end=len(packet), ingress_ifindex=ingress_ifindex)
    opts = TestRunOpts(sz=ctypes.sizeof(TestRunOpts))
    opts.data_in = ctypes.cast(ctypes.c_char_p(packet), c_void_p)
    opts.data_size_in = len(packet)
    if not flags & BPF_F_TEST_XDP_LIVE_FRAMES:
        opts.data_out = ctypes.cast(data_out, c_void_p)
        opts.data_size_out = len(data_out)
    opts.ctx_in = ctypes.cast(ctypes.pointer(ctx), c_void_p)
    opts.ctx_size_in = ctypes.sizeof(ctx)
    opts.repeat, opts.flags, opts.batch_size = repeat, flags, batch_size
    check(lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "bpf_prog_test_run")
    return opts.retval, data_out.raw[:opts.data_size_out], opts.duration


# ---- run-time statistics (added for tna bench) -------------------------------------------------

BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type


class ProgRunInfo(ctypes.Structure):
    # struct bpf_prog_info up to run_cnt: the fields before it are fixed ABI (192 bytes).
    _fields_ = [("_head", ctypes.c_uint8 * 192), ("run_time_ns", ctypes.c_uint64),
                ("run_cnt", ctypes.c_uint64)]


def enable_run_time_stats() -> int:
    """BPF_ENABLE_STATS: programs count runs and run time while the returned fd is open."""
    fn = lib().bpf_enable_stats
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
    return check(fn(BPF_STATS_RUN_TIME), "bpf_enable_stats")


def prog_run_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program, as counted while run-time stats were enabled."""
    info = ProgRunInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
          "bpf_obj_get_info_by_fd(prog run stats)")
    return info.run_time_ns, info.run_cnt


# ---- ring buffers (added for tna monitor) ------------------------------------------------------

class RingBuffer:
    """A BPF ring buffer map read with libbpf's ring_buffer__poll: ``on_record`` gets a copy of
    each record, in the order the programs submitted them."""

    def __init__(self, map_fd: int, on_record: Callable[[bytes], None]) -> None:
        def sample(_ctx: int, data: int, size: int) -> int:
            on_record(ctypes.string_at(data, size))
            return 0

        self._callback = RING_SAMPLE_FN(sample)  # kept alive as long as libbpf may call it
        self._rb = check_ptr(lib().ring_buffer__new(map_fd, self._callback, None, None),
                             "ring_buffer__new")

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for records and hand them over; returns how many.
        An interrupted wait (a signal) returns 0: the caller's handler decides."""
        ret = lib().ring_buffer__poll(self._rb, timeout_ms)
        if ret == -errno_mod.EINTR:
            return 0
        if check(ret, "ring_buffer__poll") == 0:
            # The kernel wakes a reader only for a record written into an empty ring: one
            # that was not empty when the reader began to wait sends none until it is read.
            # So read whatever is there once the wait ends, woken or not.
            ret = check(lib().ring_buffer__consume(self._rb), "ring_buffer__consume")
        return ret

    def close(self) -> None:
        if self._rb:
            lib().ring_buffer__free(self._rb)
            self._rb = 0
