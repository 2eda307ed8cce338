"""The comparison table (``<out>/compare/table.csv`` and ``table.md``): one typed ``ComparisonRow`` per case,
written as text (intervals "[lo, hi]", None as an empty cell) and read back into rows through the same types."""

from __future__ import annotations

import csv
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from flow.config import Basis, EstimateMethod, Variant
from flow.errors import FlowError
from flow.records import Interval
from flow.rundir import atomic_path, write_text_atomic
from flow.schema import build

FOUR_DECIMALS = {"format": ".4f"}
OPEN_ENDED = {"format": ".4f", "infinite": True}  # the per-bit ratio's bound is inf without a baseline failure


@dataclass(frozen=True, kw_only=True)
class ComparisonRow:
    """One case of the comparison, a field per table column (in the table's order); None where a figure is
    undefined (no baseline reference, no faults in a group, not measured by the estimate method). The overheads
    and the per-bit figures are set by flow/compare.py ``add_overheads`` and ``add_failure_rates``."""

    variant: str  # the case label: selective_min_0.3, selective_min_budget20, pruned_0.5, ...
    kind: Variant
    verified: str  # "yes", else why not
    harden_ratio: float | None = None
    harden_budget_pct: float | None = None
    prune_ratio: float | None = None
    fault_free_accuracy: float
    faults: int
    critical_count: int
    critical_rate: float
    critical_ci95: Interval = field(metadata=FOUR_DECIMALS)
    sdc_rate: float
    masked_rate: float
    mean_accuracy_under_fault: float | None
    fault_sites: int
    faults_protected: int | None = None  # per fault group (flow/faultlist.py GROUPS): faults, critical rate
    critical_rate_protected: float | None = None
    faults_unprotected: int | None = None
    critical_rate_unprotected: float | None = None
    faults_copy: int | None = None
    critical_rate_copy: float | None = None
    faults_correction: int | None = None
    critical_rate_correction: float | None = None
    params: int
    macs: int
    LUT: int  # flow/hardware/estimate.py RESOURCE_KEYS
    FF: int
    DSP: int
    BRAM_18K: int
    latency_cycles: int
    params_overhead_pct: float | None = None  # vs the baseline: compare.OVERHEAD_KEYS
    macs_overhead_pct: float | None = None
    LUT_overhead_pct: float | None = None
    FF_overhead_pct: float | None = None
    DSP_overhead_pct: float | None = None
    BRAM_18K_overhead_pct: float | None = None
    latency_cycles_overhead_pct: float | None = None
    critical_reduction_pct: float | None = None
    basis: Basis | None = None  # compare.basis: what the plots and the goal check rank by
    per_bit_relative_rate: float | None = None
    per_bit_relative_ci95: Interval | None = field(default=None, metadata=OPEN_ENDED)
    per_bit_reduction_pct: float | None = None
    predicted_reduction_pct: float | None = None  # planned cases: the planner's per_bit_reduction_pct
    fit: float | None = None
    fit_ci95: Interval | None = field(default=None, metadata={"format": ".4g"})
    fits_board: bool | None
    estimate_method: EstimateMethod
    LUT_analytic: int | None = None
    LUT_yosys_calibrated: int | None = None
    LUT_yosys_over_analytic: float | None = None
    estimate_in_domain: bool | None = None
    deploy_suggestion: str | None = None


FIELDS = {f.name: f for f in dataclasses.fields(ComparisonRow)}
TYPES = typing.get_type_hints(ComparisonRow)
COLUMNS = tuple(FIELDS)

BASIS_COLUMNS = {  # the rate each basis ranks variants by, and its 95 % interval
    Basis.PER_FAULT: ("critical_rate", "critical_ci95"),
    Basis.PER_BIT: ("per_bit_relative_rate", "per_bit_relative_ci95"),
}
BASIS_LABELS = {
    Basis.PER_FAULT: "critical-SDC rate per fault",
    Basis.PER_BIT: "critical failure rate vs baseline (per bit, equal upset rate)",
}


def basis_of(rows: list[ComparisonRow]) -> Basis:
    """The basis a table was written with (tables without the column: per_fault, as they were)."""
    return (rows[0].basis if rows else None) or Basis.PER_FAULT


def rate(row: ComparisonRow, basis: Basis) -> float | None:
    """The row's critical failure rate on ``basis`` (None when undefined: a baseline without critical faults)."""
    return getattr(row, BASIS_COLUMNS[basis][0])


def rate_interval(row: ComparisonRow, basis: Basis) -> Interval | None:
    """The 95 % interval of ``rate`` (set wherever the rate is)."""
    return getattr(row, BASIS_COLUMNS[basis][1])


def cell(row: ComparisonRow, column: str) -> str:
    """The table's text of one value: intervals "[lo, hi]" in the column's format, None empty."""
    value = getattr(row, column)
    if value is None:
        return ""
    if isinstance(value, tuple):
        spec = FIELDS[column].metadata["format"]
        return f"[{value[0]:{spec}}, {value[1]:{spec}}]"
    return str(value)  # a StrEnum's str is its value, a float's its repr


def cells(row: ComparisonRow) -> dict[str, str]:
    return {column: cell(row, column) for column in COLUMNS}


def write_tables(rows: list[ComparisonRow], directory: Path) -> None:
    """``table.csv`` and ``table.md`` of ``rows`` in ``directory``."""
    with atomic_path(directory / "table.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(map(cells, rows))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(row).values()) + " |" for row in rows]
    write_text_atomic(directory / "table.md", "\n".join(lines) + "\n")


def read_table(path: Path) -> list[ComparisonRow]:
    """The rows of a ``table.csv``; a FlowError naming the file, the row and the column when one does not read."""
    try:
        with open(path, newline="") as f:
            texts = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FlowError(f"{path}: not a readable table ({exc}); rerun ftflow compare") from None
    try:
        return [build(ComparisonRow, _values(text), f"{path} row {i}") for i, text in enumerate(texts, 1)]
    except FlowError as exc:
        raise FlowError(f"{exc}; rerun ftflow compare") from None


def _values(text: dict[str | None, str | list[str] | None]) -> dict:
    """A CSV row's texts as the plain values its fields hold (left as text where they do not parse: ``build``
    then names the column and what it expected)."""
    return {column: _value(TYPES.get(column), value) for column, value in text.items()}


def _value(tp: object, text: object) -> object:
    if not isinstance(text, str):  # a row with more or fewer cells than the header
        return text
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if text == "":
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    try:
        if typing.get_origin(tp) is tuple and text.startswith("[") and text.endswith("]"):
            return [float(v) for v in text[1:-1].split(",")]
        if tp in (int, float):
            return tp(text)
    except ValueError:
        return text
    return {"True": True, "False": False}.get(text, text) if tp is bool else text
