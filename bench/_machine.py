"""What ran, and on what: the commit, the versions, the machine; CPU time from /proc.

`provenance()` names the commit (`git rev-parse --short HEAD`, "+dirty" when the tree has
changes, with the changed files and a hash of `git diff HEAD` so that the very tree can be
told apart), the date, Python / Redis / grpcio / redis-py versions, and the machine (cores,
model from /proc/cpuinfo). Git is only read (`--no-optional-locks`: not even the index's
stat cache is written).

`CpuWatch` takes CPU time in the same interval from /proc/stat (the whole machine:
processes' time, interrupts, idle, stolen by the hypervisor) and from /proc/<pid>/stat of
the processes it is told of (utime + stime), so that "other processes" is the processes'
time less theirs; the busiest of those others are named.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import redis

ROOT = Path(__file__).parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, check=True,
                              capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> dict[str, Any]:
    head = _git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in _git("status", "--porcelain").splitlines() if line]
    out: dict[str, Any] = {"commit": head + ("+dirty" if changed else ""), "head": head}
    if changed:
        out["changed"] = changed
        out["diff_sha256"] = hashlib.sha256(_git("diff", "HEAD").encode()).hexdigest()[:12]
    return out


def served_commit(service: Path) -> str:
    """The commit of the checkout whose `service/` folder the server runs (`--service`)."""
    out = subprocess.run(["git", "-C", str(service), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return f"{out or 'unknown'} ({service})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(redis_info: dict[str, Any]) -> dict[str, Any]:
    load = os.getloadavg()
    return {
        **commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "redis": redis_info.get("redis_version"),
        "grpcio": grpc.__version__,
        "redis_py": redis.__version__,
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def header(meta: dict[str, Any]) -> str:
    changed = meta.get("changed")
    tree = (f" (uncommitted changes, `git diff HEAD` sha256 {meta['diff_sha256']}…, in "
            f"{', '.join(f'`{c}`' for c in changed)})" if changed else "")
    took = f"; the run took {meta['seconds'] / 60:.1f} min" if "seconds" in meta else ""
    served = (f"; the server ran the code of `{meta['server_code']}`"
              if "server_code" in meta else "")
    return (f"Commit `{meta['commit']}`{tree}{served}, {meta['date']}; Python {meta['python']}, "
            f"Redis {meta['redis']}, grpcio {meta['grpcio']}, redis-py {meta['redis_py']}; "
            f"{meta['cores']} cores ({meta['cpu_model']}, {meta['machine']}, Linux "
            f"{meta['kernel']}); load average at the start "
            f"{', '.join(str(x) for x in meta['load_average_at_start'])}{took}.")


# -- CPU time -------------------------------------------------------------------------------

def proc_cpu(pid: int) -> float:
    """Seconds of CPU (user + system, all threads) the process has used; 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def machine_cpu() -> tuple[float, float, float, float]:
    """(processes' time, interrupts, idle, steal) seconds summed over every CPU since boot.
    Interrupt time (irq, softirq: much of loopback networking) is the kernel's, and not in
    any process's utime + stime."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (parts + [0] * 8)[:8]
    return ((user + nice + system) / TICK, (irq + softirq) / TICK, (idle + iowait) / TICK,
            steal / TICK)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def everyone() -> dict[int, float]:
    """CPU seconds of every process now."""
    return {int(e.name): proc_cpu(int(e.name)) for e in Path("/proc").iterdir()
            if e.name.isdigit()}


def command(pid: int) -> str:
    """A process's command line, shortened (its name if it has none, "?" if it is gone)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        text = " ".join(w.decode(errors="replace") for w in words if w)
        if not text:
            text = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class CpuShare:
    """CPU seconds in one interval: each named group of processes, the rest of the machine."""

    seconds: float
    groups: dict[str, float]
    busy: float
    """Processes' time (user, nice, system), every process."""
    irq: float
    idle: float
    steal: float
    top_others: list[tuple[str, float]]
    """The busiest processes outside the groups: (command, CPU seconds)."""

    @property
    def capacity(self) -> float:
        return self.seconds * (os.cpu_count() or 1)

    @property
    def other(self) -> float:
        """Time of processes outside the groups (those that started and ended within the
        interval included)."""
        return max(0.0, self.busy - sum(self.groups.values()))

    def percent(self, seconds: float) -> float:
        """`seconds` as a share of the machine's capacity in the interval (all cores)."""
        return round(100 * seconds / self.capacity, 1) if self.capacity else float("nan")

    def summary(self) -> dict[str, float]:
        """Percent of the machine (all cores = 100) per group, other processes, stolen,
        idle."""
        out = {name: self.percent(s) for name, s in self.groups.items()}
        out.update(other=self.percent(self.other), irq=self.percent(self.irq),
                   steal=self.percent(self.steal), idle=self.percent(self.idle))
        return out

    def others_text(self) -> str:
        """The other processes that took 1 % of the machine or more."""
        return ", ".join(f"{name} {self.percent(s):g} %" for name, s in self.top_others
                         if self.percent(s) >= 1)


class CpuWatch:
    """`start()`, then `stop()`: the CPU each group of pids used between them."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._t = 0.0
        self._cpu: dict[str, float] = {}
        self._machine = (0.0, 0.0, 0.0, 0.0)
        self._all: dict[int, float] = {}

    def _read(self) -> dict[str, float]:
        return {name: sum(proc_cpu(p) for p in pids) for name, pids in self.groups.items()}

    def start(self) -> CpuWatch:
        self._all = everyone()
        self._t, self._cpu, self._machine = time.perf_counter(), self._read(), machine_cpu()
        return self

    def stop(self) -> CpuShare:
        t, cpu, (busy, irq, idle, steal) = time.perf_counter(), self._read(), machine_cpu()
        now = everyone()
        b0, q0, i0, s0 = self._machine
        ours = {p for pids in self.groups.values() for p in pids}
        used = sorted(((now[p] - self._all.get(p, 0.0), p) for p in now if p not in ours),
                      reverse=True)[:3]
        return CpuShare(t - self._t, {n: cpu[n] - self._cpu[n] for n in cpu},
                        busy - b0, irq - q0, idle - i0, steal - s0,
                        [(command(p), s) for s, p in used if s > 0])


# -- sockets --------------------------------------------------------------------------------

def _tcp_rows() -> list[list[str]]:
    rows = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        rows += [line.split() for line in lines]
    return rows


def listeners(port: int) -> int:
    """Sockets listening on `port` (with SO_REUSEPORT, one per process sharing it)."""
    return sum(1 for r in _tcp_rows()
               if int(r[1].rsplit(":", 1)[1], 16) == port and r[3] == "0A")


def connections_per_process(port: int, pids: list[int]) -> dict[int, int]:
    """Established connections to local `port` held by each of `pids` (its socket inodes,
    from /proc/<pid>/fd, matched in /proc/net/tcp)."""
    inodes = {r[9] for r in _tcp_rows()
              if int(r[1].rsplit(":", 1)[1], 16) == port and r[3] == "01"}
    out = {}
    for pid in pids:
        held = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                held += link.startswith("socket:[") and link[8:-1] in inodes
        except OSError:
            pass
        out[pid] = held
    return out
