"""Output directories checked up front: a bad ``--out`` / ``--dest`` is one clear error before any work starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flow.errors import FlowError


def usable_out_dir(path: str | Path, what: str = "--out") -> Path:
    """``path`` as a directory this process can write into (created with its parents if missing).

    Raises a FlowError naming ``what`` (the option or key) and the path when it is a file, lies under a file, or is
    not writable. Nothing already in the directory is touched (the write probe is an anonymous temporary file)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FlowError(f"{what} {path}: is a file, not a directory; give a directory (created if missing)")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise FlowError(f"{what} {path}: cannot be created, {existing} is a file; give a directory path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FlowError(f"{what} {path}: not writable ({existing} denies write access); give a writable directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise FlowError(f"{what} {path}: not writable ({exc.strerror or exc}); give a writable directory") from None
    return path
