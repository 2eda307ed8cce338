"""The records the steps write and compare, report and the CLI read: inject/summary.json, estimate/resources.json
and harden/summary.json, as frozen dataclasses loaded and written through flow/schema.py (the config's schema
code). A writer passes its data through the record (``write_record``), so a key the record does not describe is
refused where it is written, and a reader gets typed values or a FlowError naming the file and the key.

A new key in one of these files is a new field here: ``field(default=None, metadata=ABSENT)`` for one
that is only sometimes written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flow.config import ActivationPoint, EstimateMethod, FaultModel, HardenMode, Policy, Space
from flow.errors import FlowError
from flow.rundir import write_json
from flow.schema import ABSENT, build, to_plain

Interval = tuple[float, float]  # a 95 % interval: (low, high)
R = TypeVar("R")


# ---- inject/summary.json (flow/campaign.py summarize, flow/steps.py step_inject) ----


@dataclass(frozen=True, kw_only=True)
class Rate:
    """One outcome's count among a block's faults, its rate and the rate's Wilson 95 % interval."""

    count: int
    rate: float
    ci95: Interval


@dataclass(frozen=True, kw_only=True)
class Outcomes:
    """Outcome counts and rates of a set of faults (the campaign, one layer's or one fault group's faults);
    ``mean_accuracy`` is None without faults."""

    n_faults: int
    masked: Rate
    sdc: Rate
    critical: Rate
    mean_accuracy: float | None


@dataclass(frozen=True, kw_only=True)
class Stop:
    """inject.stop_at_margin: why the campaign stopped (flow/campaign.py PrefixRule.report)."""

    margin: float
    stopped: bool
    faults: int
    of: int
    half_width: float
    checked_every: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class Engine:
    name: str
    scheduler: str | None
    workers: int


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """The evaluation mode asked for and the one that ran (with why fast fell back), faults stopped early."""

    requested: str
    mode: str
    fallback: str | None = field(default=None, metadata=ABSENT)
    stopped_early: int
    stopped_early_share: float


@dataclass(frozen=True, kw_only=True)
class Timing:
    evaluated: int
    seconds: float
    per_fault_ms: float


@dataclass(frozen=True, kw_only=True)
class InjectSummary:
    """inject/summary.json: the campaign's outcomes in total, per layer and per fault group (a note instead when
    the array table predates channel layouts), the fault-free accuracy, the stop, engine, evaluation and timing."""

    campaign: str
    inputs: dict[str, str]
    fault_model: FaultModel
    mbu: int
    space: Space = Space.WEIGHTS  # absent in summaries written before activation faults
    activation: ActivationPoint | None = field(default=None, metadata=ABSENT)  # space activations only
    samples: int
    total: Outcomes
    layers: dict[str, Outcomes]
    groups: dict[str, Outcomes] | str
    golden_accuracy: float
    stop: Stop | None = field(default=None, metadata=ABSENT)
    engine: Engine
    evaluation: Evaluation
    timing: Timing
    crosscheck: Any = field(default=None, metadata=ABSENT)  # flow/crosscheck.py's report


# ---- estimate/resources.json (flow/hardware/resources.py estimate_resources) ----


@dataclass(frozen=True, kw_only=True)
class Latency:
    cycles: int
    ns: float
    ii_cycles: int
    method: str | None = field(default=None, metadata=ABSENT)  # yosys: the latency is the analytic one


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """The deploy configuration that fits the board, or (``fits`` False) the least utilised one tried."""

    label: str
    hls: Any = field(default=None, metadata=ABSENT)
    total: dict[str, int] | None = field(default=None, metadata=ABSENT)
    multipliers: int | None = field(default=None, metadata=ABSENT)
    latency_cycles: int | None = field(default=None, metadata=ABSENT)
    utilisation_pct: dict[str, float] | None = field(default=None, metadata=ABSENT)
    fits: bool
    least: Any = field(default=None, metadata=ABSENT)
    boards: tuple[str, ...] | None = field(default=None, metadata=ABSENT)


@dataclass(frozen=True, kw_only=True)
class AnalyticEstimate:
    """The analytic estimate a yosys estimate keeps beside its own counts."""

    total: dict[str, int]
    layers: tuple[dict[str, Any], ...]
    yosys_calibrated: dict[str, int] | None = field(default=None, metadata=ABSENT)
    in_domain: bool | None = field(default=None, metadata=ABSENT)
    out_of_domain: tuple[str, ...] | None = field(default=None, metadata=ABSENT)


@dataclass(frozen=True, kw_only=True)
class Resources:
    """estimate/resources.json: the method's totals (RESOURCE_KEYS; yosys adds CARRY4) and latency, the board and
    its utilisation, whether it fits, warnings and a deploy suggestion; the method's own detail (analytic: per
    layer and the calibration domain; vendor: its clock and the part's resources; yosys: modules, units, the
    analytic estimate and yosys/analytic)."""

    method: EstimateMethod
    part: str
    family: str | None = field(default=None, metadata=ABSENT)
    clock_period_ns: float | None = field(default=None, metadata=ABSENT)
    estimated_clock_ns: float | None = field(default=None, metadata=ABSENT)
    io_type: str | None = field(default=None, metadata=ABSENT)
    pipeline_style: str | None = field(default=None, metadata=ABSENT)
    # analytic: every layer's LayerEstimate and calibration domain
    layers: tuple[dict[str, Any], ...] | None = field(default=None, metadata=ABSENT)
    total: dict[str, int]
    modules: Any = field(default=None, metadata=ABSENT)
    cached_modules: tuple[str, ...] | None = field(default=None, metadata=ABSENT)
    units: dict[str, int] | None = field(default=None, metadata=ABSENT)
    batch_seconds: tuple[float, ...] | None = field(default=None, metadata=ABSENT)
    synthesis_seconds: float | None = field(default=None, metadata=ABSENT)
    multipliers: int | None = field(default=None, metadata=ABSENT)
    available: dict[str, int] | None = field(default=None, metadata=ABSENT)
    latency: Latency
    analytic: AnalyticEstimate | None = field(default=None, metadata=ABSENT)
    yosys_calibrated: dict[str, int] | None = field(default=None, metadata=ABSENT)
    in_domain: bool | None = field(default=None, metadata=ABSENT)
    out_of_domain: tuple[str, ...] | None = field(default=None, metadata=ABSENT)
    yosys_over_analytic: dict[str, float | None] | None = field(default=None, metadata=ABSENT)
    board: str
    strategy: str
    reuse_factor: int
    capacity: dict[str, int]
    utilisation_pct: dict[str, float]
    fits: bool | None
    over: tuple[str, ...]
    suggestion: Suggestion | None
    warnings: tuple[str, ...]

    @property
    def analytic_part(self) -> AnalyticEstimate | Resources | None:
        """The analytic estimate: this one (method analytic) or the one a yosys estimate keeps (None: vendor)."""
        return self if self.method is EstimateMethod.ANALYTIC else self.analytic


# ---- harden/summary.json (flow/harden.py overhead_summary, flow/steps.py step_harden) ----


@dataclass(frozen=True, kw_only=True)
class HardenedLayer:
    channels: int
    extra_channels: int
    copy_layers: tuple[str, ...]
    protected: tuple[int, ...]
    policy: Policy | None = None  # the protected channels' policy; null when none is protected
    params: int
    params_hardened: int
    macs: int
    macs_hardened: int


@dataclass(frozen=True, kw_only=True)
class HardenTotal:
    params: int
    params_hardened: int
    macs: int
    macs_hardened: int
    extra_channels: int
    params_overhead_pct: float
    macs_overhead_pct: float


@dataclass(frozen=True, kw_only=True)
class HardenSummary:
    """harden/summary.json: mode, policy, selection (``all`` for full DMR/TMR), per-layer and total costs, whether
    the hardened model equals the unhardened one with no fault, and the ranking method it used."""

    mode: HardenMode
    policy: Policy | None  # null: each layer's own (selection plan, layers.*.policy)
    selection: str
    clip: bool
    layers: dict[str, HardenedLayer]
    total: HardenTotal
    no_fault_bit_exact: bool
    ranking: str | None


# ---- reading and writing ----

STEPS = {InjectSummary: "inject", Resources: "estimate", HardenSummary: "harden"}  # the step that writes each


def write_record(path: Path, cls: type[R], data: dict) -> R:
    """``data`` as a ``cls`` record, written to ``path`` as JSON (what the record holds, nothing else)."""
    record = build(cls, data, f"{path} (writing)")
    write_json(path, to_plain(record))
    return record


def load_record(cls: type[R], path: Path) -> R:
    """The ``cls`` record in ``path``; a FlowError naming the file (and the key) when it is missing or wrong."""
    path = Path(path)
    rerun = f"rerun the {STEPS[cls]} step"
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise FlowError(f"{path}: not found; {rerun}") from None
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise FlowError(f"{path}: not readable JSON ({' '.join(str(exc).split())[:200]}); {rerun}") from None
    try:
        return build(cls, data, str(path))
    except FlowError as exc:
        raise FlowError(f"{exc}; {rerun}") from None


def load_inject_summary(path: Path) -> InjectSummary:
    return load_record(InjectSummary, path)


def load_resources(path: Path) -> Resources:
    return load_record(Resources, path)


def load_harden_summary(path: Path) -> HardenSummary:
    return load_record(HardenSummary, path)
