"""Helpers of the tests that kill campaigns: a run directory's stored rows, and the processes below a process."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def stored_rows(out: Path, columns: str = "*") -> list[tuple]:
    """The ``results`` rows of ``out/inject/campaign.sqlite`` (read-only, by fault id; [] while there are none)."""
    path = out / "inject" / "campaign.sqlite"
    if not path.is_file():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT {columns} FROM results ORDER BY fault_id").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
