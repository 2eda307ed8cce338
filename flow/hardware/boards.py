"""FPGA boards: part number, default clock and capacities, read from ``boards/<name>.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from flow.config import BoardConfig
from flow.errors import FlowError
from flow.package_data import boards_dir as shipped_boards_dir

DEFAULT_BOARD = "pynq-z2"
DEFAULT_CLOCK_NS = 5.0
RESOURCES = ("LUT", "FF", "DSP", "BRAM_18K")


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    clock_period: float
    capacity: dict[str, int]  # LUT, FF, DSP, BRAM_18K; empty for a raw part


def known_boards(boards_dir: Path | None = None) -> list[str]:
    """Names of the boards described in ``boards_dir`` (default: the shipped ``boards/``)."""
    return sorted(p.stem for p in (boards_dir or shipped_boards_dir()).glob("*.yaml"))


def load_board(name: str, boards_dir: Path | None = None) -> Board:
    """Read one board file (default: from the shipped ``boards/``); an unknown name lists the known ones."""
    boards_dir = boards_dir or shipped_boards_dir()
    path = boards_dir / f"{name}.yaml"
    if not path.is_file():
        raise FlowError(f"board '{name}' is unknown; known boards: {', '.join(known_boards(boards_dir))}")
    data = yaml.safe_load(path.read_text()) or {}
    missing = [k for k in ("part", "clock_period", "capacity") if k not in data]
    if missing:
        raise FlowError(f"{path}: missing key(s) {', '.join(missing)}")
    capacity = data["capacity"]
    absent = [r for r in RESOURCES if r not in capacity]
    if absent:
        raise FlowError(f"{path}: capacity lacks {', '.join(absent)} (needs {', '.join(RESOURCES)})")
    return Board(name, str(data["part"]), float(data["clock_period"]), {r: int(capacity[r]) for r in RESOURCES})


def resolve_board(cfg: BoardConfig) -> Board:
    """The board a run targets: a named board, a raw part, or the default board; clock_period overrides."""
    if cfg.part is not None:
        board = Board(cfg.part, cfg.part, DEFAULT_CLOCK_NS, {})
    else:
        board = load_board(cfg.name or DEFAULT_BOARD)
    if cfg.clock_period is not None:
        board = Board(board.name, board.part, cfg.clock_period, board.capacity)
    return board
