"""Run directories that cannot be corrupted: one writer at a time (an ``fcntl.flock`` on ``<out>/.ftflow.lock``
held for the whole command) and artefacts written to a temporary file beside them, then renamed (``os.replace``),
so a kill leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flow.errors import FlowError

log = logging.getLogger(__name__)

LOCK_NAME = ".ftflow.lock"
SUBRUNS = "compare"  # ``ftflow compare`` runs every variant in <out>/compare/<variant>/


@dataclass
class _Held:
    fd: int
    pid: int  # the process that took it: a forked child inherits the entry but never releases the lock
    depth: int = 1


_HELD: dict[Path, _Held] = {}
_WARNED: set[tuple[str, int, int]] = set()


# ---- the lock ----


def related_run_dirs(out: Path) -> list[Path]:
    """``out``, the comparison directory enclosing it (``X`` for ``X/compare/<variant>``) and its own existing
    sub-runs that were ever locked: a writer of one of them must not run beside a writer of another."""
    out = Path(out).resolve()
    parent = out.parent.parent
    enclosing = [parent] if out.parent.name == SUBRUNS and (parent / "manifest.json").is_file() else []
    subruns = sorted(p.parent for p in (out / SUBRUNS).glob(f"*/{LOCK_NAME}"))
    return [*enclosing, out, *subruns]


@contextlib.contextmanager
def run_lock(out: Path, create: bool = True) -> Iterator[None]:
    """Be the only writer of the run directory ``out`` (and of the related ones) for the block; another process
    gets a FlowError naming the holder's pid at once. Re-entrant within a process. With ``create`` False a
    missing directory is not created (nor locked)."""
    out = Path(out)
    if not out.is_dir():
        if not create:
            yield
            return
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FlowError(f"cannot create the run directory {out}: {exc.strerror}") from None
    with contextlib.ExitStack() as stack:
        for directory in related_run_dirs(out):
            stack.enter_context(_locked(directory))
        yield


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    held = _HELD.get(directory)
    if held is not None:  # this process (or the parent it was forked from) holds it already
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
        return
    _HELD[directory] = held = _Held(_acquire(directory), os.getpid())
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0 and held.pid == os.getpid():
            del _HELD[directory]
            if held.fd >= 0:
                os.close(held.fd)  # closing the only descriptor releases the flock


def _acquire(directory: Path) -> int:
    """Take the lock file's flock (non-blocking) and write our pid and start time into it; -1 if the directory
    is read-only or the file system cannot lock (then the command goes on unlocked)."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by exec'd children (PEP 446)
    except OSError as exc:  # a read-only run directory (export reads it): nobody writes there
        log.info("%s: cannot create the lock file (%s); going on unlocked", path, exc.strerror)
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _holder(path)
        raise FlowError(f"{directory} is in use by {holder}; wait for it to end or use another directory") from None
    except OSError as exc:
        os.close(fd)
        log.warning("%s: cannot lock (%s); nothing keeps another ftflow from writing there", path, exc.strerror)
        return -1
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {datetime.now().isoformat(sep=' ', timespec='seconds')}\n".encode(), 0)
    return fd


def _holder(path: Path) -> str:
    """'pid N (started T)' from the lock file (the holder writes it right after locking)."""
    for _ in range(25):
        with contextlib.suppress(OSError):
            pid, _, started = path.read_text().strip().partition(" ")
            if pid.isdigit():
                return f"pid {pid} (started {started})"
        time.sleep(0.02)
    return "another process"


# ---- atomic writes ----


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, for writers that go by it) to write; on success it is
    synced and renamed onto ``path``, on failure removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            tmp.unlink()


def write_atomic(path: Path, writer: Callable[[Path], Any]) -> Path:
    """``writer(tmp)`` writes the file (a Keras model, a NumPy array, a figure), which is then renamed onto
    ``path``; returns ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: Path, obj: Any, indent: int | None = 2, default: Any = None) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; returns ``path``."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=default))


def read_json(path: Path, expect: type = dict) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable (truncated by a kill, say: a warning
    names it once and the caller treats it as missing, so what it recorded is computed again)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if isinstance(data, expect):
            return data
        problem = f"not a JSON {expect.__name__}"
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = str(exc)
    _warn_once(path, problem)
    return None


def _warn_once(path: Path, problem: str) -> None:
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = (str(path), -1, -1)
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("%s is unreadable (%s); treating it as missing: the steps it recorded will run again", path,
                    problem)  # fmt: skip
