"""Was the measured CPU ours during a window?  Interference from other tasks, from /proc.

Role in the flow: serial mode puts generator, forwarding and sink on one CPU; any other task
scheduled there (a test suite, a build) steals time and lowers the rate.  Before and after a
window the runner samples that CPU's time (``/proc/stat``) and the time of the tasks that work
for the benchmark (the generator thread, which also runs the softirqs it raises, and the CPU's
ksoftirqd); what is left over was spent on something else.  Tick-based accounting, so a 2 s
window resolves about 1%.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

BUSY_FIELDS = (0, 1, 2, 5, 6)  # user nice system irq softirq (cpuN line of /proc/stat)
STEAL_FIELD = 7


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # ticks the CPU spent on anything but idle/iowait/steal
    steal: int  # ticks the hypervisor gave to someone else
    total: int
    ours: int  # ticks of the benchmark's own tasks (on any CPU; they are pinned)


def _cpu_line(cpu: int) -> list[int]:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                return [int(x) for x in line.split()[1:]]
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def _task_ticks(path: str) -> int:
    """utime + stime of one task (fields 14 and 15 of its stat file)."""
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        return 0
    fields = raw[raw.rindex(")") + 2:].split()  # the name may contain spaces
    return int(fields[11]) + int(fields[12])


def ksoftirqd(cpu: int) -> int | None:
    """pid of ksoftirqd/<cpu>, which runs the softirqs the generator's CPU defers."""
    want = f"ksoftirqd/{cpu}"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == want:
                    return int(pid)
        except OSError:
            continue
    return None


def task_paths(tids: Sequence[int], cpu: int) -> list[str]:
    """stat files of the benchmark's tasks: threads of this process, the CPU's ksoftirqd."""
    paths = [f"/proc/{os.getpid()}/task/{tid}/stat" for tid in tids]
    kd = ksoftirqd(cpu)
    if kd is not None:
        paths.append(f"/proc/{kd}/stat")
    return paths


def sample(cpu: int, paths: Sequence[str]) -> CpuTimes:
    v = _cpu_line(cpu)
    return CpuTimes(busy=sum(v[i] for i in BUSY_FIELDS), steal=v[STEAL_FIELD], total=sum(v),
                    ours=sum(_task_ticks(p) for p in paths))


def interference(before: CpuTimes, after: CpuTimes) -> tuple[float, float]:
    """(share of the CPU used by other tasks, share stolen by the hypervisor) in between."""
    total = after.total - before.total
    if total <= 0:
        return 0.0, 0.0
    others = (after.busy - before.busy) - (after.ours - before.ours)
    return max(0, others) / total, (after.steal - before.steal) / total


def sample_cpus(cpus: Sequence[int], paths: Sequence[str]) -> CpuTimes:
    """As ``sample``, for several CPUs together (each benchmark task counted once)."""
    lines = [_cpu_line(c) for c in cpus]
    return CpuTimes(busy=sum(v[i] for v in lines for i in BUSY_FIELDS),
                    steal=sum(v[STEAL_FIELD] for v in lines), total=sum(sum(v) for v in lines),
                    ours=sum(_task_ticks(p) for p in dict.fromkeys(paths)))
