"""Process leases: which worker process holds a job, and whether that process is certainly gone.

A lease is "<host>:<pid>:<process start ticks>", written on a row (an analysis's
`worker_lease`, an upload's `processing_lease`) or in an engine's working folder, so the
reaper can tell at once that a job's worker died on this host instead of waiting for a
heartbeat to go stale.
"""

from __future__ import annotations

import os
import socket


def _process_start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name (field 2) may contain spaces; the fields after it do not.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_lease(pid: int) -> str:
    """ "<host>:<pid>:<start ticks>": identifies one process even after its pid is reused."""
    return f"{socket.gethostname()}:{pid}:{_process_start_ticks(pid) or '?'}"


def current_worker_lease() -> str:
    return process_lease(os.getpid())


def worker_lease_is_dead(lease: str) -> bool:
    """True only when the lease's process is certainly gone (same host, pid gone or reused)."""
    try:
        host, pid_text, ticks = lease.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False  # another machine's worker: only its heartbeat can tell
    current_ticks = _process_start_ticks(pid)
    return current_ticks is None or (ticks != "?" and current_ticks != ticks)
