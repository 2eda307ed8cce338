"""Comparison runs: the same fault campaign and the same resource estimate on several variants of one trained
model (baseline, selective hardening and selective TMR at several ratios or budgets, full DMR/TMR, pruned,
pruned+hardened), and one table of accuracy, critical-SDC rate, LUT/FF/DSP/BRAM, latency and overheads vs the baseline
(``<out>/compare/table.csv`` and ``table.md``). Rates on two bases: per injected fault, and per bit (the critical
failure rate at one per-bit upset rate: fault sites x critical rate per fault, relative to the baseline, and in FIT);
compare.basis picks the one the plots and the goal check use. compare.fault_models: every case under more fault
models, each a campaign on the case's converted project (``<case>/faultmodels/<name>/inject/``), in
``<out>/compare/faultmodels.csv`` and ``.md``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from flow.compare_table import ComparisonRow, FaultModelRow, write_tables
from flow.config import (
    CompareConfig,
    FaultModel,
    HardenMode,
    InjectConfig,
    Policy,
    PruneCriterion,
    RunConfig,
    Selection,
    Space,
    Variant,
    config_to_dict,
)
from flow.errors import FlowError
from flow.faultlist import GROUPS, NoTargets, act_sites
from flow.faultlist import fault_sites as sites
from flow.fi_bridge import read_table, read_tensors
from flow.freshness import is_current
from flow.harden import layer_costs, total_cost
from flow.hardware.estimate import RESOURCE_KEYS
from flow.hls import HlsProject
from flow.modelio import load_model
from flow.records import Outcomes, Resources, load_inject_summary, load_resources
from flow.rundir import write_text_atomic
from flow.schema import to_plain
from flow.state import RunState, read_manifest
from flow.stats import ratio_interval, wilson_interval
from flow.steps import check_inject_samples, run, step_inject

HARDENING = {
    Variant.SELECTIVE_MIN: (HardenMode.SELECTIVE, Policy.MIN),
    Variant.SELECTIVE_RANGE: (HardenMode.SELECTIVE, Policy.RANGE),
    Variant.SELECTIVE_TMR: (HardenMode.SELECTIVE_TMR, Policy.VOTE),
    Variant.FULL_DMR: (HardenMode.FULL_DMR, Policy.MIN),
    Variant.FULL_TMR: (HardenMode.FULL_TMR, Policy.VOTE),
    Variant.PRUNED_HARDENED: (HardenMode.SELECTIVE, Policy.MIN),
    Variant.PLANNED: (HardenMode.SELECTIVE, None),  # each layer's policy is the planner's
}
FULLY_HARDENED = tuple(v for v, (mode, _) in HARDENING.items() if mode in (HardenMode.FULL_DMR, HardenMode.FULL_TMR))
SWEPT_BY_HARDEN_RATIO = (Variant.SELECTIVE_MIN, Variant.SELECTIVE_RANGE, Variant.SELECTIVE_TMR)
SWEPT_BY_PRUNE_RATIO = (Variant.PRUNED, Variant.PRUNED_L1, Variant.PRUNED_HARDENED)
SWEPT_BY_BUDGET = (Variant.PLANNED,)
OVERHEAD_KEYS = ("params", "macs", *RESOURCE_KEYS, "latency_cycles")


@dataclass(frozen=True)
class Case:
    """One row of the comparison: a variant at one hardening ratio, hardening budget or pruning ratio."""

    variant: Variant
    harden_ratio: float | None = None
    prune_ratio: float | None = None
    harden_budget: float | None = None  # % of the baseline's harden.budget_metric

    @property
    def label(self) -> str:
        if self.harden_budget is not None:
            return f"{self.variant.value}_budget{self.harden_budget:g}"
        ratio = self.harden_ratio if self.harden_ratio is not None else self.prune_ratio
        return self.variant.value if ratio is None else f"{self.variant.value}_{ratio:g}"


def cases(cfg: RunConfig) -> list[Case]:
    """The rows the config asks for; the baseline always comes first (it is the reference of the overheads)."""
    swept = [{"harden_ratio": r} for r in cfg.compare.ratios] + [{"harden_budget": b} for b in cfg.compare.budgets]
    as_given = {"harden_ratio": cfg.harden.ratio} if cfg.harden.selection is Selection.RATIO else {}
    prune_ratios = cfg.compare.prune_ratios or (cfg.prune.ratio,)
    result = [Case(Variant.BASELINE)]
    for variant in cfg.compare.variants:
        if variant in SWEPT_BY_HARDEN_RATIO:
            result += [Case(variant, **point) for point in swept or [as_given]]
        elif variant in SWEPT_BY_PRUNE_RATIO:
            result += [Case(variant, prune_ratio=r) for r in prune_ratios]
        elif variant in SWEPT_BY_BUDGET:
            result += [Case(variant, harden_budget=b) for b in cfg.compare.budgets] or [Case(variant)]
        elif variant is not Variant.BASELINE:
            result.append(Case(variant))
    return result


def case_config(cfg: RunConfig, case: Case) -> tuple[RunConfig, list[str]]:
    """The run config and the steps that build, estimate and inject one case from the trained, ranked model."""
    steps = ["convert", "verify", "inject", "estimate"]
    cfg = dataclasses.replace(cfg, verify=dataclasses.replace(cfg.verify, require_bit_exact=False))  # marked instead
    if case.prune_ratio is not None:
        criterion = PruneCriterion.L1 if case.variant is Variant.PRUNED_L1 else cfg.prune.criterion
        prune = dataclasses.replace(cfg.prune, ratio=case.prune_ratio, criterion=criterion, channels={})
        cfg = dataclasses.replace(cfg, prune=prune)
        steps = ["prune", *(["rank", "harden"] if case.variant is Variant.PRUNED_HARDENED else []), *steps]
    elif case.variant in HARDENING:
        steps = ["harden", *steps]
    if case.variant in HARDENING:
        mode, policy = HARDENING[case.variant]
        harden = dataclasses.replace(cfg.harden, mode=mode, policy=policy)
        if case.harden_ratio is not None:
            harden = dataclasses.replace(harden, selection=Selection.RATIO, ratio=case.harden_ratio)
        if case.variant is Variant.PLANNED:
            harden = dataclasses.replace(harden, selection=Selection.PLAN)
        if case.harden_budget is not None:
            selection = Selection.PLAN if case.variant is Variant.PLANNED else Selection.BUDGET
            harden = dataclasses.replace(harden, selection=selection, budget=case.harden_budget,
                                         target_reduction_pct=None)  # fmt: skip
        cfg = dataclasses.replace(cfg, harden=harden)
    return cfg, steps


def compare(cfg: RunConfig, out: Path) -> list[ComparisonRow]:
    """Train and rank once in ``out`` (reused if there), then build, estimate and inject every case."""
    check_inject_samples(cfg)  # every case injects: a bad inject.* is refused before training
    user_model = cfg.model.path or cfg.model.json
    retrain = not user_model or "train" in (cfg.steps or ())  # a user's trained model is trained only if asked
    base_steps = ["load", "train", "rank"] if retrain else ["load", "rank"]
    if not is_current(RunState(out=out), cfg, base_steps):  # made from this config (flow/lineage.py), else again
        run(cfg, out, base_steps)
    manifest = read_manifest(out)
    base = {"model": manifest["lineage"][-1]["key"], "ranking": manifest["keys"]["ranking"]}
    rows, fm_rows, measured, injects = [], [], None, cfg.fault_model_injects()
    for case in cases(cfg):
        vdir = out / "compare" / case.label
        vcfg, steps = case_config(cfg, case)
        fingerprint = json.dumps({"config": _case_dict(vcfg), "steps": steps, "base": base}, sort_keys=True)
        done = vdir / "case.json"
        if not (done.is_file() and done.read_text() == fingerprint):  # a finished case is not run again
            _seed_variant_dir(out, manifest, vdir)
            if case.variant is Variant.PLANNED and measured is not None:  # reused where still current
                shutil.copytree(measured, vdir / "harden" / "plan", dirs_exist_ok=True)
            run(vcfg, vdir, steps)
            write_text_atomic(done, fingerprint)
        if case.variant is Variant.PLANNED:
            measured = vdir / "harden" / "plan"
        rows.append(_row(case, vdir, cfg.inject))
        fm_rows += [fault_model_row(case.label, name, vcfg, vdir, inject, fingerprint)
                    for name, inject in injects.items()]  # fmt: skip
    rows = add_failure_rates(add_overheads(rows), cfg.compare, _ber(cfg.inject))
    write_tables(rows, out / "compare")
    write_fault_models(fm_rows, injects, out / "compare")
    return rows


FAULT_MODELS = "faultmodels"  # <case>/faultmodels/<name>/ and compare/faultmodels.csv, .md


def fault_model_campaign(vcfg: RunConfig, vdir: Path, name: str, inject: InjectConfig, case_key: str) -> Path:
    """The inject directory of one fault model's campaign on a built case: the case's own when the fault model is
    inject.*, else ``<case>/faultmodels/<name>/inject/``, the inject step run on the case's converted project
    (nothing converted again; resumed like inject) unless made from this case and fault model already."""
    if inject == vcfg.inject:
        return vdir / "inject"
    fdir = vdir / FAULT_MODELS / name
    made_from = json.dumps({"case": hashlib.sha256(case_key.encode()).hexdigest()[:20], "inject": to_plain(inject)},
                           sort_keys=True)  # fmt: skip
    done = fdir / "fault_model.json"
    if not (done.is_file() and done.read_text() == made_from):
        manifest = read_manifest(vdir)
        model, project = load_model(vdir / manifest["model"]), HlsProject.load(vdir / manifest["project"])
        step_inject(RunState(out=fdir, model=model, project=project), dataclasses.replace(vcfg, inject=inject))
        write_text_atomic(done, made_from)
    return fdir / "inject"


def fault_model_row(label: str, name: str, vcfg: RunConfig, vdir: Path, inject: InjectConfig, case_key: str
                    ) -> FaultModelRow:  # fmt: skip
    """One built case under one fault model: its campaign (``fault_model_campaign``) and its fault sites; a row
    of no faults when the fault model selects nothing in the case."""
    described = {"variant": label, "fault_model": name, "space": inject.space, "model": inject.model,
                 "activation": inject.activation if inject.space is Space.ACTIVATIONS else None, "mbu": inject.mbu,
                 "targets": "+".join(t.value for t in inject.targets)}  # fmt: skip
    try:
        sites = fault_sites(vdir, inject)
        summary = load_inject_summary(fault_model_campaign(vcfg, vdir, name, inject, case_key) / "summary.json")
    except NoTargets:
        return FaultModelRow(**described, faults=0, fault_sites=0, critical_count=0)
    except FlowError as exc:  # e.g. an inject.mbu wider than a word of this case
        raise FlowError(f"compare.fault_models {name} on case {label}: {exc}") from None
    total = summary.total
    return FaultModelRow(
        **described,
        faults=total.n_faults,
        fault_sites=sites,
        critical_count=total.critical.count,
        critical_rate=round(total.critical.rate, 5),
        critical_ci95=_rounded(total.critical.ci95),
        sdc_rate=round(total.sdc.rate, 5),
        mean_accuracy_under_fault=None if total.mean_accuracy is None else round(total.mean_accuracy, 5),
        per_fault_ms=round(summary.timing.per_fault_ms, 3),
    )


def write_fault_models(rows: list[FaultModelRow], injects: dict[str, InjectConfig], directory: Path) -> None:
    """``faultmodels.csv`` and ``.md`` with the per-bit rate of each row relative to the baseline under the same
    fault model (the first case's row of it); without compare.fault_models, none (an older one removed)."""
    if not rows:
        for suffix in (".csv", ".md"):
            (directory / f"{FAULT_MODELS}{suffix}").unlink(missing_ok=True)
        return
    base = {}
    for row in rows:
        base.setdefault(row.fault_model, row)
    result = []
    for row in rows:
        reference = base[row.fault_model]
        if not (row.faults and reference.faults):  # no site of this fault model in the case or in the baseline
            result.append(row)
            continue
        ratio, lo, hi = relative_rate(row, reference, _ber(injects[row.fault_model]))
        result.append(dataclasses.replace(row, per_bit_relative_rate=None if ratio is None else round(ratio, 5),
                                          per_bit_relative_ci95=_rounded((lo, hi))))  # fmt: skip
    write_tables(result, directory, FAULT_MODELS)


def _case_dict(cfg: RunConfig) -> dict:
    """The config a case's fingerprint holds: not the presentation keys (compare.basis, fit_per_mbit), so that
    changing them only rewrites the tables, nor compare.fault_models (their campaigns have their own keys)."""
    data = config_to_dict(cfg)
    data["compare"] = {k: v for k, v in data["compare"].items() if k not in ("basis", "fit_per_mbit", "fault_models")}
    return data


def unverified(rows: list[ComparisonRow]) -> list[str]:
    """Variants whose C-sim failed verification: their rates describe hardware that is not the model."""
    return [row.variant for row in rows if row.verified != "yes"]


def _seed_variant_dir(out: Path, manifest: dict, vdir: Path) -> None:
    """Give a variant directory the trained model and the ranking (copies: each run directory stands alone)."""
    state = RunState(out=vdir)
    for key, step in (("model", "train"), ("ranking", "rank")):
        target = state.step_dir(step) / Path(manifest[key]).name
        shutil.copy2(out / manifest[key], target)
        state.record(**{key: target})
    state.record(unhardened_model=None, project=None)
    lineage = [*manifest["lineage"][:-1], {**manifest["lineage"][-1], "model": read_manifest(vdir)["model"]}]
    state.note(lineage=lineage, keys={"ranking": manifest["keys"]["ranking"]})


def _row(case: Case, vdir: Path, inject: InjectConfig) -> ComparisonRow:
    """One case's measured figures: fault campaign, fault sites, model cost, resources and latency."""
    summary = load_inject_summary(vdir / "inject" / "summary.json")
    verify = json.loads((vdir / "verify" / "report.json").read_text())
    resources = load_resources(vdir / "estimate" / "resources.json")
    total = summary.total
    cost = total_cost(layer_costs(load_model(vdir / read_manifest(vdir)["model"])))
    return ComparisonRow(
        variant=case.label,
        kind=case.variant,
        verified=_verdict(verify),
        harden_ratio=case.harden_ratio,
        harden_budget_pct=case.harden_budget,
        prune_ratio=case.prune_ratio,
        fault_free_accuracy=round(summary.golden_accuracy, 5),
        faults=total.n_faults,
        critical_count=total.critical.count,
        critical_rate=round(total.critical.rate, 5),
        critical_ci95=_rounded(total.critical.ci95),
        sdc_rate=round(total.sdc.rate, 5),
        masked_rate=round(total.masked.rate, 5),
        mean_accuracy_under_fault=None if total.mean_accuracy is None else round(total.mean_accuracy, 5),
        fault_sites=fault_sites(vdir, inject),
        **group_columns(summary.groups),
        params=cost["params"],
        macs=cost["macs"],
        **{key: resources.total[key] for key in RESOURCE_KEYS},
        latency_cycles=resources.latency.cycles,
        fits_board=resources.fits,
        predicted_reduction_pct=_predicted_reduction(vdir),
        **_estimator_columns(resources),
    )


def _predicted_reduction(vdir: Path) -> float | None:
    """The planner's predicted cut of the per-bit critical failure rate (%), for a planned case; else None."""
    plan = vdir / "harden" / "plan.json"
    return json.loads(plan.read_text())["predicted_reduction_pct"] if plan.is_file() else None


def _rounded(interval: tuple[float, float], digits: int = 4) -> tuple[float, float]:
    """An interval at the precision the table shows (so that the table reads back as the same row)."""
    return round(interval[0], digits), round(interval[1], digits)


def _verdict(verify: dict) -> str:
    """'yes' when the C-sim is bit-exact with QKeras (and, hardened, equal to the unhardened model), else why not."""
    if not verify["bit_exact"]:
        where = verify.get("first_mismatch_layer")
        return f"NO: C-sim differs on {verify['n_samples_differing']}/{verify['n_samples']}" + (
            f" from layer {where}" if where else ""
        )
    if verify.get("equals_unhardened") is False:
        return "NO: differs from the unhardened model with no fault"
    return "yes"


def _estimator_columns(resources: Resources) -> dict:
    """The analytic LUTs (raw and calibrated to yosys) beside the method's own, yosys/analytic when measured, whether
    the estimate lies in the calibration domain and the deploy configuration suggested when it does not fit."""
    analytic = resources.analytic_part  # yosys keeps the analytic estimate beside its own
    return {
        "estimate_method": resources.method,
        "LUT_analytic": analytic.total["LUT"] if analytic else None,
        "LUT_yosys_calibrated": (analytic.yosys_calibrated or {}).get("LUT") if analytic else None,
        "LUT_yosys_over_analytic": (resources.yosys_over_analytic or {}).get("LUT"),
        "estimate_in_domain": resources.in_domain,  # False: the LUTs are extrapolations
        "deploy_suggestion": resources.suggestion.label if resources.suggestion else None,  # when it does not fit
    }


def add_overheads(rows: list[ComparisonRow]) -> list[ComparisonRow]:
    """Overheads in % of the first row (the baseline) and the reduction of its critical-SDC rate in %."""
    base = rows[0]

    def pct(value: float, reference: float) -> float | None:
        return round(100.0 * (value - reference) / reference, 2) if reference else None

    return [
        dataclasses.replace(
            row,
            **{f"{key}_overhead_pct": pct(getattr(row, key), getattr(base, key)) for key in OVERHEAD_KEYS},
            critical_reduction_pct=(
                round(100.0 * (base.critical_rate - row.critical_rate) / base.critical_rate, 2)
                if base.critical_rate
                else None
            ),
        )
        for row in rows
    ]


def fault_sites(vdir: Path, inject: InjectConfig) -> int:
    """Fault sites (word and start bit of an inject.mbu upset; bits for single-bit faults and ber) of every array
    the campaign targets (inject.targets, inject.layers) in the variant's C-sim array table: copies and, when
    targeted, correction data included; with inject.space activations, the activation sites of the tensors it
    targets (flow/faultlist.py act_sites: the copies' and corrections' outputs are datapath that can fail too)."""
    project = HlsProject.load(vdir / read_manifest(vdir)["project"])
    if inject.space is Space.ACTIVATIONS:
        return act_sites(activation_tensors_of(project.directory), inject, inject.samples)
    return sites(read_table(project.directory), inject)


def activation_tensors_of(project_dir: Path) -> list[dict]:
    """The tensor table of a converted project (activation fault sites); an error when it predates the table."""
    table = read_tensors(project_dir)
    if table is None:
        raise FlowError(f"{project_dir}: no tensor table for activation faults; run the convert step again")
    return table["tensors"]


def group_columns(groups: dict[str, Outcomes] | str) -> dict:
    """Faults and critical rate per fault group (protected, unprotected, copy, correction) of an inject summary's
    groups; None where there were none or the summary has no groups (a note instead)."""
    columns = {}
    for group in GROUPS:
        block = groups.get(group) if isinstance(groups, dict) else None
        columns[f"faults_{group}"] = block.n_faults if block else None
        columns[f"critical_rate_{group}"] = round(block.critical.rate, 5) if block and block.n_faults else None
    return columns


def _ber(inject: InjectConfig) -> float | None:
    return inject.ber if inject.model is FaultModel.BER else None


MBIT = 1e6  # bits in the Mbit of compare.fit_per_mbit


def exposure(row: ComparisonRow | FaultModelRow, ber: float | None) -> float:
    """Upsets per unit of per-bit upset rate a campaign unit stands for: a single fault is one of the variant's
    fault sites, so exposure = sites; a ber trial flips every bit with probability BER, so exposure = 1/BER (its
    critical rate P ~ sites x BER x p while sites x BER is small: P / BER ~ sites x p)."""
    return 1.0 / ber if ber else float(row.fault_sites)


def add_failure_rates(rows: list[ComparisonRow], cfg: CompareConfig, ber: float | None = None) -> list[ComparisonRow]:
    """The per-bit basis beside the per-fault one: each variant's critical failure rate at the baseline's per-bit
    upset rate, relative to the baseline's, r = e_v p_v / (e_b p_b) (e: ``exposure``, p: critical rate per fault
    or per ber trial), its interval (``stats.ratio_interval``), 100 (1 - r), and FIT = fit_per_mbit / 1e6 x e_v
    p_v with the Wilson interval of p_v scaled alike. ``rows[0]`` is the baseline (1 by definition, [1, 1])."""
    base = rows[0]
    fit_per_bit = cfg.fit_per_mbit / MBIT
    result = []
    for row in rows:
        k, n, e = row.critical_count, row.faults, exposure(row, ber)
        ratio, lo, hi = relative_rate(row, base, ber)
        fit_lo, fit_hi = wilson_interval(k, n)
        result.append(dataclasses.replace(
            row, basis=cfg.basis,
            per_bit_relative_rate=None if ratio is None else round(ratio, 5),
            per_bit_relative_ci95=_rounded((lo, hi)),
            per_bit_reduction_pct=None if ratio is None else round(100.0 * (1.0 - ratio), 2),
            fit=_significant(fit_per_bit * e * k / n),
            fit_ci95=(_significant(fit_per_bit * e * fit_lo), _significant(fit_per_bit * e * fit_hi)),
        ))  # fmt: skip
    return result


def relative_rate(row: ComparisonRow | FaultModelRow, base: ComparisonRow | FaultModelRow, ber: float | None
                  ) -> tuple[float | None, float, float]:  # fmt: skip
    """r = e_v p_v / (e_b p_b) with its 95 % interval (``stats.ratio_interval``); the baseline itself 1, [1, 1]."""
    scale = exposure(row, ber) / exposure(base, ber)
    ratio, lo, hi = ratio_interval(row.critical_count, row.faults, base.critical_count, base.faults, scale)
    return (ratio, 1.0, 1.0) if row is base and ratio is not None else (ratio, lo, hi)


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")
