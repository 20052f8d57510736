"""Which Chromium processes this bench started, and making sure none outlives its scenario.

Playwright starts Chromium detached, as the leader of a process group of its own; the zygotes,
renderers, GPU and utility processes join that group.  After a launch the host finds the new
group by walking ``/proc`` from this process down (the Playwright driver is our child, the browser
its child) and keeps the group id.  When the browser should be gone -- after ``browser.close()``,
or after a crash -- :func:`reap_group` waits briefly for the group to empty and then kills what is
left of it (SIGTERM, then SIGKILL): only processes of a group this bench created, by id.

Chromium's crash handler (``chrome_crashpad_handler``) double-forks out of the group; it exits on
its own when the browser is gone.  Linux only (``/proc``); elsewhere nothing is tracked.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Proc", "processes", "descendants", "chromium_groups", "live_in_group", "reap_group",
           "CHROMIUM_NAMES", "LAUNCHED"]

CHROMIUM_NAMES = ("chromium", "chrome", "headless_shell")
#: every Chromium process group this process launched (the host adds them; tests check none is left)
LAUNCHED: list[int] = []


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    comm: str


def processes() -> dict[int, Proc]:
    """Every process visible in /proc (pid -> Proc); empty where there is no /proc."""
    out: dict[int, Proc] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        lpar, rpar = raw.find("("), raw.rfind(")")
        comm = raw[lpar + 1:rpar]
        fields = raw[rpar + 2:].split()
        try:
            out[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[2]), fields[0], comm)
        except (IndexError, ValueError):
            continue
    return out


def descendants(root: int, table: dict[int, Proc] | None = None) -> list[Proc]:
    table = processes() if table is None else table
    children: dict[int, list[Proc]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def chromium_groups(root: int | None = None) -> set[int]:
    """Process groups led by a Chromium process among the descendants of ``root`` (this process)."""
    table = processes()
    return {p.pgid for p in descendants(os.getpid() if root is None else root, table)
            if p.pid == p.pgid and p.comm.startswith(CHROMIUM_NAMES)}


def live_in_group(pgid: int, table: dict[int, Proc] | None = None) -> list[Proc]:
    """Processes of group ``pgid`` that are still running (zombies do not count)."""
    table = processes() if table is None else table
    return [p for p in table.values() if p.pgid == pgid and p.state != "Z"]


def reap_group(pgid: int, grace: float = 3.0) -> list[int]:
    """Wait up to ``grace`` seconds for group ``pgid`` to end, then SIGTERM and SIGKILL the rest.
    Returns the pids that had to be killed."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not live_in_group(pgid):
            return []
        time.sleep(0.05)
    killed = [p.pid for p in live_in_group(pgid)]
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return killed
        stop = time.monotonic() + wait
        while time.monotonic() < stop:
            if not live_in_group(pgid):
                return killed
            time.sleep(0.05)
    return killed
