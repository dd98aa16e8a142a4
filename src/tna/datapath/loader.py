"""Reconciling the fast path of the current namespace with a plan: programs, maps, links.

Role in the flow: :class:`Datapath` takes the per-interface ports and namespace data a plan
produced (:mod:`tna.plan.types`) and makes the kernel match them: one specialised program per
accelerated interface (loaded by :mod:`~tna.datapath.program`), shared maps for everything
that is data (written by :mod:`~tna.datapath.maps` and :mod:`~tna.datapath.firewall`), one BPF
link per interface (:mod:`~tna.datapath.links`), pinned where :mod:`~tna.datapath.pins` says.

Every change goes in three phases, so that traffic which must return to Linux does so first
and never waits for the slower program loads:

1. *restrict*: each interface's map entry is narrowed to what both the old and the new plan
   allow (an egress withdrawn, a family handed back to Linux) — map writes only;
2. *programs*: new programs are loaded, then swapped in atomically with ``bpf_link_update``
   (never detach-then-attach), attached to new interfaces, detached from dropped ones;
3. *relax*: entries get exactly what the new plan allows.

Links are either pinned (``tna apply``: the fast path outlives the command) or owned by the
process (``tna run``: if the daemon dies, the kernel detaches them and Linux carries on alone).

Programs and their maps are one unit: each reconciliation first finds TNA's programs attached
in the namespace from the kernel (recognised by what they are, not by pins), binds the map
writers to the maps those programs read (:func:`~tna.datapath.pins.bind`), takes over links it
did not know (a moved pin directory), detaches TNA programs that read any other map set (no
writer would ever reach them), and re-pins what was removed or moved — each repair logged.

The kernel state the plan does not carry (the route cache's redirect exceptions) is read by
the control side and handed in (``redirect_exceptions``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from tna.datapath import libbpf
from tna.datapath.firewall import Written
from tna.datapath.libbpf import LibbpfError
from tna.datapath.links import create_link, detach_link
from tna.datapath.maps import (
    NOTHING,
    IfaceMaps,
    NamespaceMaps,
    RedirectExceptions,
    gaining_firewall,
    intersect,
    mac_bytes,
    mac_str,
    sync_redirects,
)
from tna.datapath.pins import (
    DatapathError,
    MapIds,
    bind,
    bound,
    has_map,
    is_bound,
    link_pin,
    make_pin_dir,
    pin_dir,
    pinned_links,
    pins_intact,
    prog_maps,
    repin,
)
from tna.datapath.program import SHARED_MAPS, Program, foreign_layout, program_features
from tna.datapath.status import attached, main_map_set, read_counters, tna_programs
from tna.plan.types import Features, Namespace, Port

# Read-back and loading live in their own modules now; these names stay importable from here
# for the benchmark, which drives programs directly.
__all__ = ["Changes", "Datapath", "DatapathError", "Features", "Program", "attached",
           "detach_all", "read_counters"]


@dataclass
class Changes:
    """What one reconciliation did, by ifindex."""

    restricted: list[int] = field(default_factory=list)
    swapped: list[int] = field(default_factory=list)
    attached: list[int] = field(default_factory=list)
    detached: list[int] = field(default_factory=list)
    relaxed: list[int] = field(default_factory=list)
    safe_at: float = 0.0  # time.monotonic() when the restrict phase was done
    firewall_written: bool = False  # a new firewall generation was written and switched to
    deferred: bool = False  # relax left out: restricted meanwhile, to be reconciled again

    def by_kind(self) -> dict[str, list[int]]:
        return {k: v for k, v in vars(self).items() if isinstance(v, list) and v}

    def __bool__(self) -> bool:
        return bool(self.by_kind())


BPF_LINK_TYPE_XDP = 6


def find_links(wanted: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """(prog id, ifindex) -> a new descriptor of the XDP link attaching that program there,
    found among the machine's links (a program id belongs to one namespace)."""
    out: dict[tuple[int, int], int] = {}
    for link_id in libbpf.link_ids() if wanted else []:
        try:
            fd = libbpf.link_get_fd_by_id(link_id)
        except LibbpfError:
            continue  # gone since the listing
        info = libbpf.link_info(fd)
        key = (info.prog_id, info.xdp_ifindex)
        if info.type == BPF_LINK_TYPE_XDP and key in wanted and key not in out:
            out[key] = fd
        else:
            os.close(fd)
    return out


def _stderr_warning(message: str) -> None:
    print(f"tna: warning: {message}", file=sys.stderr)


def _link_program(link_fd: int) -> tuple[int, Features | None]:
    prog_id = libbpf.link_info(link_fd).prog_id
    prog_fd = libbpf.prog_get_fd_by_id(prog_id)
    try:
        return prog_id, program_features(prog_fd)
    finally:
        os.close(prog_fd)


class Datapath:
    """TNA's fast path in the current namespace.

    ``owned=False`` (``tna apply``): links are pinned and outlive the process.
    ``owned=True`` (``tna run``): links are held in this process's descriptors.
    """

    def __init__(self, owned: bool = False, obj_path: str | None = None,
                 redirect_exceptions: RedirectExceptions | None = None,
                 warn: Callable[[str], None] = _stderr_warning) -> None:
        self.owned = owned
        self.warn = warn  # repairs (re-pinned maps, taken-over links) are logged through it
        self.obj_path = obj_path
        # read by the control side (the kernel's route cache); without it, assume some exist
        self.redirect_exceptions = redirect_exceptions or (lambda: 1)
        self.links: dict[int, int] = {}  # owned mode: ifindex -> link fd
        self._firewall: Written | None = None  # what the firewall maps hold, if we wrote them

    # -- link handles, whichever mode --
    @contextmanager
    def _link(self, ifindex: int) -> Iterator[int | None]:
        if self.owned:
            yield self.links.get(ifindex)
            return
        path = link_pin(ifindex)
        if not os.path.exists(path):
            yield None
            return
        fd = libbpf.obj_get(path)
        try:
            yield fd
        finally:
            os.close(fd)

    def ifindexes(self) -> list[int]:
        return sorted(self.links) if self.owned else pinned_links()

    def programs(self) -> dict[int, Features | None]:
        """ifindex -> the features of the program running there now."""
        out = {}
        for ifindex in self.ifindexes():
            with self._link(ifindex) as fd:
                if fd is not None:
                    out[ifindex] = _link_program(fd)[1]
        return out

    def prog_ids(self) -> frozenset[int]:
        """Ids of the programs on this datapath's links."""
        out = set()
        for ifindex in self.ifindexes():
            with self._link(ifindex) as fd:
                if fd is not None:
                    out.add(libbpf.link_info(fd).prog_id)
        return frozenset(out)

    def adopt(self) -> list[int]:
        """Take over pinned links (left by ``tna apply`` or ``tna run --keep``), unpinning them.

        Only owned mode adopts; the programs keep running throughout.
        """
        assert self.owned
        taken = []
        for ifindex in pinned_links():
            path = link_pin(ifindex)
            self.links[ifindex] = libbpf.obj_get(path)
            os.unlink(path)
            taken.append(ifindex)
        return taken

    # -- reconciliation --
    def restrict(self, ifindexes: Iterable[int] | None = None) -> list[int]:
        """Hand all traffic of ``ifindexes`` (None: every interface) back to Linux at once:
        no egress, no family. Map writes only; the next reconciliation relaxes what the new
        plan allows. Returns the interfaces whose entries changed."""
        if not is_bound():  # the maps the running programs read, found once
            self._claim_attached()
        if not has_map(SHARED_MAPS[0]):
            return []
        maps = IfaceMaps()
        changed = []
        try:
            scope = maps.entries if ifindexes is None else set(ifindexes) & set(maps.entries)
            for ifindex in scope:
                entry = maps.entries[ifindex]
                flags = intersect(entry.flags, NOTHING)
                if flags != entry.flags:
                    maps.write(ifindex, mac_str(bytes(entry.mac)), flags)
                    changed.append(ifindex)
        finally:
            maps.close()
        return changed

    def reconcile(self, ports: Sequence[Port], namespace: Namespace | None = None,
                  lock: AbstractContextManager[object] | None = None,
                  may_relax: Callable[[], bool] | None = None) -> Changes:
        """Make the fast path match ``ports`` in three phases (see the module docstring).

        A daemon that restricts from another thread as notifications arrive passes the
        ``lock`` it restricts under (held here for the map writes of the restrict and relax
        phases, never for program loads) and ``may_relax``: asked under the lock, False when
        something was restricted since the configuration behind ``ports`` was read.  The relax
        is then left out (``Changes.deferred``): the entries stay as restricted, and the
        caller reconciles again from a fresh read.

        Without a port that gets a program nothing stays pinned: whatever ran is detached and
        the namespace's maps are unpinned.
        """
        if not any(p.features is not None for p in ports):
            return self._clear()
        make_pin_dir()
        self._claim_attached()
        self._repin()
        self._ensure_maps()
        wanted = {p.ifindex: p for p in ports}
        changes = Changes()
        redirects = any(p.accept_redirects for p in ports)
        namespace = namespace or Namespace()
        lock = lock or contextlib.nullcontext()
        running = self.programs()
        maps: IfaceMaps | None = None
        ns: NamespaceMaps | None = None
        try:
            with lock:  # entries read and narrowed with no restriction from elsewhere between
                maps, ns = IfaceMaps(), NamespaceMaps()
                self._restrict(maps, wanted, running, changes)
                ns.restrict(namespace)
                changes.firewall_written = self._write_firewall(ns, namespace)
            if redirects:
                sync_redirects(self.redirect_exceptions, clear=False)
            changes.safe_at = time.monotonic()
            self._swap_programs(wanted, running, changes)
            if changes.attached or bound() is None:
                self._bind_own()  # later writes (the sentinel's too) reach what they read
            with lock:
                if may_relax is not None and not may_relax():
                    changes.deferred = True
                    return changes
                self._relax(maps, wanted, changes)
                ns.relax(namespace)
            if redirects:
                sync_redirects(self.redirect_exceptions, clear=True)
        finally:
            if maps is not None:
                maps.close()
            if ns is not None:
                ns.close()
        return changes

    def _clear(self) -> Changes:
        changes = Changes(detached=self.ifindexes())
        if changes.detached or os.path.isdir(pin_dir()):
            self.release(keep=False)
        self._firewall = None  # the maps are gone with their pins
        changes.safe_at = time.monotonic()
        return changes

    def _write_firewall(self, ns: NamespaceMaps, namespace: Namespace) -> bool:
        """A changed ruleset is a map update (both generations' layout is fixed), done in the
        restrict phase: a stricter ruleset then holds before any program changes."""
        wanted = Written(namespace.firewall, namespace.ct_timeouts_ms, namespace.ct_tcp,
                         namespace.ct_hz, namespace.ct_tcp_retrans)
        if wanted == self._firewall:
            return False
        self._firewall = None  # unknown if the write fails half-way
        ns.write_firewall(namespace)
        self._firewall = wanted
        return True

    # -- programs and their maps, one unit --
    def _claim_attached(self) -> None:
        """Find TNA's programs attached here (from the kernel) and bind the map writers to
        the maps they read: the daemon's own links decide, else what most programs read.
        Links nobody holds a handle to are taken over; programs on any other map set are
        detached, since nothing would ever write what they read."""
        programs = tna_programs()
        own_progs = {libbpf.link_info(fd).prog_id for fd in self.links.values()}
        own = {frozenset(m.items()) for m in map(prog_maps, own_progs) if m}
        chosen: MapIds | None = (dict(own.pop()) if self.owned and len(own) == 1
                                 else main_map_set(programs))
        if chosen and (foreign := foreign_layout(chosen, self.obj_path)):
            # another TNA version's programs (an upgrade): detach them and their pins, so
            # that fresh maps of this build's layout are created; Linux forwards meanwhile
            self.warn("detached TNA programs of another version (map layout of "
                      f"{', '.join(foreign)} differs); loading this version's")
            self.release(keep=False)
            self._firewall = None
            make_pin_dir()
            programs, chosen = tna_programs(), None
        known = set(self.ifindexes())
        stray = {(prog_id, i) for i, (prog_id, _, maps) in programs.items()
                 if maps != chosen or i not in known}
        links = find_links(stray)
        for (_, ifindex), fd in links.items():
            if programs[ifindex][2] != chosen:
                self.warn(f"detached a TNA program on ifindex {ifindex} that read maps no "
                          "writer reaches")
                try:
                    detach_link(fd)
                finally:
                    os.close(fd)
            elif self.owned:
                self.links[ifindex] = fd
                self.warn(f"took over the link of ifindex {ifindex}, attached without a pin")
            else:
                try:
                    make_pin_dir()
                    libbpf.obj_pin(fd, link_pin(ifindex))
                finally:
                    os.close(fd)
                self.warn(f"re-pinned the link of ifindex {ifindex}, attached without a pin")
        bind(chosen)

    def _bind_own(self) -> None:
        """Bind the map writers to the maps of the programs just attached (the claim at the
        start of a reconciliation saw none when this one attached the first)."""
        for ifindex in self.ifindexes():
            with self._link(ifindex) as fd:
                maps = prog_maps(libbpf.link_info(fd).prog_id) if fd is not None else None
            if maps:
                bind(maps)
                return

    def pins_intact(self) -> bool:
        """Whether the pins still are the maps the running programs read (a reconciliation
        puts back what is not, and says so)."""
        return pins_intact(SHARED_MAPS)

    def _repin(self) -> None:
        fixed = repin(SHARED_MAPS)
        if fixed:
            self.warn(f"re-pinned {len(fixed)} map(s) of the running programs in {pin_dir()} "
                      f"(removed or replaced): {', '.join(fixed)}")

    def _ensure_maps(self) -> None:
        if not all(has_map(n) for n in SHARED_MAPS):
            Program(Features(), obj_path=self.obj_path).close()  # creates and pins them

    def _restrict(self, maps: IfaceMaps, wanted: dict[int, Port],
                  running: dict[int, Features | None], changes: Changes) -> None:
        for ifindex, entry in list(maps.entries.items()):
            port = wanted.get(ifindex)
            flags = intersect(entry.flags, port.flags if port else NOTHING)
            if port is not None:
                flags |= gaining_firewall(running.get(ifindex), port.features)
            if flags != entry.flags:
                maps.write(ifindex, port.mac if port else "", flags)
                changes.restricted.append(ifindex)
        for ifindex, port in wanted.items():
            if ifindex not in maps.entries:  # new: known to the program, allowed nothing yet
                maps.write(ifindex, port.mac, NOTHING)

    def _swap_programs(self, wanted: dict[int, Port], running: dict[int, Features | None],
                       changes: Changes) -> None:
        todo = {i: p.features for i, p in wanted.items()
                if p.features is not None and running.get(i) != p.features}
        # one program per distinct feature set: it reads its interface from the context
        loaded = {f: Program(f, obj_path=self.obj_path) for f in set(todo.values()) if f}
        try:
            for ifindex, features in todo.items():
                assert features is not None
                prog_fd = loaded[features].fd
                if ifindex in running:
                    with self._link(ifindex) as fd:
                        assert fd is not None
                        libbpf.link_update(fd, prog_fd)
                    changes.swapped.append(ifindex)
                else:
                    self._attach(ifindex, prog_fd)
                    changes.attached.append(ifindex)
        finally:
            for prog in loaded.values():
                prog.close()
        for ifindex in running:
            port = wanted.get(ifindex)
            if port is None or port.features is None:
                self._detach(ifindex)
                changes.detached.append(ifindex)

    def _relax(self, maps: IfaceMaps, wanted: dict[int, Port], changes: Changes) -> None:
        for ifindex in list(maps.entries):
            if ifindex not in wanted:
                maps.remove(ifindex)
        for ifindex, port in wanted.items():
            entry = maps.entries[ifindex]
            if (entry.flags, bytes(entry.mac)) != (port.flags, mac_bytes(port.mac)):
                maps.write(ifindex, port.mac, port.flags)
                changes.relaxed.append(ifindex)

    def _attach(self, ifindex: int, prog_fd: int) -> None:
        link_fd = create_link(ifindex, prog_fd)
        if self.owned:
            self.links[ifindex] = link_fd
            return
        try:
            libbpf.obj_pin(link_fd, link_pin(ifindex))
        finally:
            os.close(link_fd)

    def _detach(self, ifindex: int) -> None:
        if self.owned:
            owned_fd = self.links.pop(ifindex)
            try:
                detach_link(owned_fd)
            finally:
                os.close(owned_fd)
            return
        with self._link(ifindex) as fd:
            if fd is not None:
                detach_link(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link_pin(ifindex))

    def release(self, keep: bool) -> None:
        """Daemon exit: ``keep`` pins the links for a successor; otherwise detach everything."""
        if keep and self.owned:
            make_pin_dir()
            self._repin()
            for ifindex, fd in self.links.items():
                libbpf.obj_pin(fd, link_pin(ifindex))
                os.close(fd)
            self.links.clear()
            return
        for ifindex in self.ifindexes():
            self._detach(ifindex)
        detach_all()


def detach_all() -> int:
    """Detach every TNA program attached in this namespace — found from the kernel, wherever
    (or whether) its link is pinned — and remove the pin directory; return the interfaces.

    ``/sys/fs/bpf/tna`` itself stays: removing it would let another user re-create it."""
    programs = tna_programs()
    links = find_links({(prog_id, i) for i, (prog_id, _, _) in programs.items()})
    for fd in links.values():
        try:
            detach_link(fd)
        finally:
            os.close(fd)
    done = {i for _, i in links}
    for ifindex in pinned_links():  # links whose device is gone, or attached otherwise
        done.add(ifindex)
        try:
            fd = libbpf.obj_get(link_pin(ifindex))
        except LibbpfError:
            continue
        try:
            detach_link(fd)
        finally:
            os.close(fd)
    path = pin_dir()  # checked: never remove through another user's directory
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise DatapathError(f"cannot remove {path}: {e.strerror}") from None
    bind(None)
    return len(done)
