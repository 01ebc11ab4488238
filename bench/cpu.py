"""Where a scenario's CPU went, read from /proc (Linux): the server's processes, PostgreSQL's, the
load generator's own, the jobs worker's, and the rest of the machine (the kernel's loopback
traffic, Redis, anything else running).

A full purchase is bounded by the CPU of the two cores that the server, PostgreSQL and the
client share, so its target reads best as a budget: at 300 purchases/s two cores leave
6.7 ms of CPU a purchase. The split says which part of the machine spends how much of it.
PostgreSQL's share is that of every process named `postgres` on this machine: a database
on another host shows as none (and its CPU is then not the two cores' to share). Elsewhere
(no /proc) the split reports nothing.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

_PROC = Path("/proc")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _processes() -> list[tuple[str, int, int]]:
    """(command name, process group, CPU ticks used) of every process."""
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the name: state, ppid, pgrp, ..., utime (14th field), stime (15th).
        found.append((name, int(fields[2]), int(fields[11]) + int(fields[12])))
    return found


def _machine_busy() -> int:
    """CPU ticks all cores spent on anything but idling or waiting for the disk."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return user + nice + system + irq + softirq + steal


class CpuSplit:
    """CPU used between `start` and `stop` by the process groups named (name -> group id),
    PostgreSQL's processes, this process (the client) and the machine as a whole."""

    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups
        self.available = (_PROC / "stat").exists()
        self._start: dict[str, float] = {}
        self._end: dict[str, float] = {}
        self._started_at = 0.0
        self._wall = 0.0

    def _now(self) -> dict[str, float]:
        processes = _processes()
        used = {
            name: sum(ticks for _, group, ticks in processes if group == group_id)
            / _TICKS_PER_SECOND
            for name, group_id in self.groups.items()
        }
        used["postgresql"] = (
            sum(ticks for command, _, ticks in processes if command == "postgres")
            / _TICKS_PER_SECOND
        )
        # This process (the asyncio client) and its children once they ended (wrk).
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        used["client"] = time.process_time() + children.ru_utime + children.ru_stime
        used["machine"] = _machine_busy() / _TICKS_PER_SECOND
        return used

    def __enter__(self) -> CpuSplit:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.available:
            self._start = self._now()
            self._started_at = time.perf_counter()

    def stop(self) -> None:
        if self.available and self._start:
            self._end = self._now()
            self._wall = time.perf_counter() - self._started_at

    def per(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit of work (`units` of them done between `start` and
        `stop`), by part, with `rest` (the machine's CPU no named part used) and
        `cores_busy` (the machine's CPU over the wall time). Empty without /proc or work."""
        if not self._end or units <= 0:
            return {}
        spent = {name: self._end[name] - self._start[name] for name in self._end}
        parts = {name: value for name, value in spent.items() if name != "machine"}
        split: dict[str, float] = {
            name: round(value * 1000 / units, 3) for name, value in parts.items()
        }
        split["rest"] = round(max(spent["machine"] - sum(parts.values()), 0) * 1000 / units, 3)
        split["machine"] = round(spent["machine"] * 1000 / units, 3)
        split["cores_busy"] = round(spent["machine"] / self._wall, 2)
        return split

    def report(self, detail: dict[str, Any], unit: str, units: int, label: str) -> None:
        """Put the CPU per unit into `detail` (`cpu_ms_per_<unit>`, for the results file) and
        print it on one line, each part's milliseconds per `label`."""
        split = detail[f"cpu_ms_per_{unit}"] = self.per(units)
        if split:
            parts = ", ".join(
                f"{name} {value}"
                for name, value in split.items()
                if name not in ("machine", "cores_busy")
            )
            print(
                f"  CPU per {label} (ms): {parts}; the machine {split['machine']}"
                f" ({split['cores_busy']} cores busy)",
                flush=True,
            )
