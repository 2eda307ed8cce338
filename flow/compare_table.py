"""The comparison tables: ``<out>/compare/table.csv`` and ``table.md``, one typed ``ComparisonRow`` per case, and
``faultmodels.csv`` / ``.md``, one ``FaultModelRow`` per case and fault model of compare.fault_models; written as text
(intervals "[lo, hi]", None as an empty cell) and read back into rows through the same types."""

from __future__ import annotations

import csv
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from flow.config import ActivationPoint, Basis, EstimateMethod, FaultModel, Space, Variant
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


@dataclass(frozen=True, kw_only=True)
class FaultModelRow:
    """One case under one fault model of compare.fault_models (``faultmodels.csv``): its campaign's critical rate
    per fault, the fault sites of that fault model, the per-bit critical failure rate relative to the baseline's
    under the same fault model, and the cost per fault. Made by flow/compare.py ``fault_model_row``."""

    variant: str  # the case label, as in table.csv
    fault_model: str  # its compare.fault_models name
    space: Space
    model: FaultModel
    activation: ActivationPoint | None = None  # space activations only
    mbu: int
    targets: str  # inject.targets joined by '+'
    faults: int  # 0 when the fault model has no site in this case (copies of an unhardened model): no campaign
    fault_sites: int
    critical_count: int
    critical_rate: float | None = None
    critical_ci95: Interval | None = field(default=None, metadata=FOUR_DECIMALS)
    sdc_rate: float | None = None
    mean_accuracy_under_fault: float | None = None
    per_bit_relative_rate: float | None = None
    per_bit_relative_ci95: Interval | None = field(default=None, metadata=OPEN_ENDED)
    per_fault_ms: float | None = None  # the campaign's wall time per fault


Row = ComparisonRow | FaultModelRow
FIELDS = {f.name: f for f in dataclasses.fields(ComparisonRow)}
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


def cell(row: Row, column: str) -> str:
    """The table's text of one value: intervals "[lo, hi]" in the column's format, None empty."""
    value = getattr(row, column)
    if value is None:
        return ""
    if isinstance(value, tuple):
        spec = _fields(type(row))[column].metadata["format"]
        return f"[{value[0]:{spec}}, {value[1]:{spec}}]"
    return str(value)  # a StrEnum's str is its value, a float's its repr


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def cells(row: Row) -> dict[str, str]:
    return {column: cell(row, column) for column in _fields(type(row))}


def write_tables(rows: list[Row], directory: Path, stem: str = "table") -> None:
    """``<stem>.csv`` and ``<stem>.md`` of ``rows`` (all of one row type) in ``directory``."""
    columns = list(_fields(type(rows[0])))
    with atomic_path(directory / f"{stem}.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(map(cells, rows))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cells(row).values()) + " |" for row in rows]
    write_text_atomic(directory / f"{stem}.md", "\n".join(lines) + "\n")


def read_table(path: Path, cls: type = ComparisonRow) -> list:
    """The ``cls`` rows of a ``table.csv`` (or ``faultmodels.csv``); a FlowError naming the file, the row and the
    column when one does not read."""
    try:
        with open(path, newline="") as f:
            texts = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FlowError(f"{path}: not a readable table ({exc}); rerun ftflow compare") from None
    types_ = typing.get_type_hints(cls)
    try:
        return [build(cls, _values(text, types_), f"{path} row {i}") for i, text in enumerate(texts, 1)]
    except FlowError as exc:
        raise FlowError(f"{exc}; rerun ftflow compare") from None


def _values(text: dict[str | None, str | list[str] | None], types_: dict[str, object]) -> dict:
    """A CSV row's texts as the plain values its fields hold (left as text where they do not parse: ``build``
    then names the column and what it expected)."""
    return {column: _value(types_.get(column), value) for column, value in text.items()}


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


def fault_model_matrix(rows: list[FaultModelRow]) -> tuple[list[str], dict[str, dict[str, FaultModelRow]]]:
    """The fault models in table order and, per variant in table order, its row under each fault model."""
    names = list(dict.fromkeys(row.fault_model for row in rows))
    matrix: dict[str, dict[str, FaultModelRow]] = {}
    for row in rows:
        matrix.setdefault(row.variant, {})[row.fault_model] = row
    return names, matrix


def critical_text(row: FaultModelRow | None) -> str:
    """'0.412 [0.380, 0.445]': the critical rate per fault with its Wilson 95 % interval; 'n/a' without faults."""
    if row is None or row.critical_rate is None or row.critical_ci95 is None:
        return "n/a"
    lo, hi = row.critical_ci95
    return f"{row.critical_rate:.3f} [{lo:.3f}, {hi:.3f}]"


def mean_cost(rows: list[FaultModelRow], fault_model: str) -> str:
    """A fault model's ms per fault, the mean over the cases that have sites of it ('n/a' when none has)."""
    costs = [r.per_fault_ms for r in rows if r.fault_model == fault_model and r.per_fault_ms is not None]
    return f"{sum(costs) / len(costs):.3f}" if costs else "n/a"
