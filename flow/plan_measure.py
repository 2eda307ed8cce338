"""What the protection planner (flow/plan.py) is fed, measured on the model to harden: one fault campaign on the
baseline and one on the model with every channel protected by each candidate policy (full DMR with min, with
range, full TMR with vote), all converted to hls4ml C-sim, each with the same fault model (inject.*, with
harden.plan_faults faults), and the analytic resource estimate of each.

Per layer l: the baseline's critical failures per unit of per-bit upset rate from faults in l's arrays,
R(l) = (critical faults in l / faults) x sites; the same R_p(l) under policy p counting l's copies (and its
correction data when inject.targets has it); e(l, p) = 1 - R_p(l) / R(l). With every layer protected a single
fault in l meets l's correction exactly as if only l were protected, so one campaign per policy measures every
layer. Costs per protected channel: the copies' and the correction's share of the layer under p (LUT+DSP from the
estimate, or MACs/params of the copies). The sub-runs live in ``<out>/harden/plan/<name>/`` and are reused while
their config, the model and the ranking are unchanged (``case.json``)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from flow.compare import fault_sites as compare_fault_sites
from flow.config import (
    CostMetric,
    FaultSampling,
    HardenConfig,
    HardenMode,
    Policy,
    RunConfig,
    config_to_dict,
)
from flow.errors import FlowError
from flow.harden import copy_of, correction_name, layer_costs, target_layers
from flow.modelio import save_model
from flow.plan import LayerOption, Plan, plan_protection
from flow.records import load_inject_summary, load_resources
from flow.rundir import write_json, write_text_atomic
from flow.state import RunState, read_manifest

FULL_MODES = {Policy.MIN: HardenMode.FULL_DMR, Policy.RANGE: HardenMode.FULL_DMR, Policy.VOTE: HardenMode.FULL_TMR}
COPIES = {Policy.MIN: 1, Policy.RANGE: 1, Policy.VOTE: 2}


def sub_config(cfg: RunConfig, policy: Policy | None) -> tuple[RunConfig, list[str]]:
    """The config and steps of one measurement run: the baseline (policy None) or every channel under ``policy``
    (harden.layers and clip as configured; the planner's own keys play no part)."""
    inject = dataclasses.replace(cfg.inject, sampling=FaultSampling.COUNT, count=cfg.harden.plan_faults,
                                 stop_at_margin=None, crosscheck=0)  # fmt: skip
    verify = dataclasses.replace(cfg.verify, require_bit_exact=True)
    steps = ["convert", "verify", "inject", "estimate"]
    harden = HardenConfig(layers=cfg.harden.layers, clip=cfg.harden.clip, profile_samples=cfg.harden.profile_samples)
    if policy is not None:
        harden = dataclasses.replace(harden, mode=FULL_MODES[policy], policy=policy)
        steps = ["harden", *steps]
    return dataclasses.replace(cfg, inject=inject, verify=verify, harden=harden, steps=None), steps


def fingerprint(cfg: RunConfig, steps: list[str], base: dict) -> str:
    """What a measurement run was made from: its config but where it is written and what compares it, its steps,
    the model's and the ranking's keys."""
    data = {k: v for k, v in config_to_dict(cfg).items() if k not in ("out", "steps", "compare")}
    return json.dumps({"config": data, "steps": steps, "base": base}, sort_keys=True)


def measure(cfg: RunConfig, state: RunState) -> dict:
    """Run (or reuse) the measurement runs for the model ``state`` is about to harden; returns, per layer, R(l),
    and per policy R_p(l), e(l, p) and the cost of one protected channel in each metric."""
    manifest = read_manifest(state.out)
    base = {"model": manifest["lineage"][-1]["key"], "ranking": manifest["keys"]["ranking"]}
    root = state.step_dir("harden") / "plan"
    runs = {"baseline": None, **{p.value: p for p in cfg.harden.plan_policies}}
    results = {}
    for name, policy in runs.items():
        vdir = root / name
        vcfg, steps = sub_config(cfg, policy)
        made_from = fingerprint(vcfg, steps, base)
        done = vdir / "case.json"
        if not (done.is_file() and done.read_text() == made_from):
            from flow.steps import run  # flow.steps runs this module's caller (step_harden)

            _seed(state, manifest, vdir)
            run(vcfg, vdir, steps)
            write_text_atomic(done, made_from)
        results[name] = _figures(vdir, vcfg)
    return _effectiveness(results, layer_costs(state.model), cfg)


def _seed(state: RunState, manifest: dict, vdir: Path) -> None:
    """A measurement run directory holding the model to harden (with its lineage) and the ranking."""
    if vdir.exists():
        shutil.rmtree(vdir)
    sub = RunState(out=vdir)
    model = save_model(state.model, sub.step_dir("train") / "model.h5")
    ranking = sub.step_dir("rank") / Path(manifest["ranking"]).name
    shutil.copy2(state.out / manifest["ranking"], ranking)
    sub.record(model=model, ranking=ranking)
    lineage = [*manifest["lineage"][:-1], {**manifest["lineage"][-1], "model": read_manifest(vdir)["model"]}]
    sub.note(lineage=lineage, keys={"ranking": manifest["keys"]["ranking"]})


def _figures(vdir: Path, cfg: RunConfig) -> dict:
    """Critical failures per unit of per-bit upset rate of each weight layer (its copies and correction folded
    in) and each layer's LUT+DSP (copies and correction folded in) of one measurement run."""
    summary = load_inject_summary(vdir / "inject" / "summary.json")
    resources = load_resources(vdir / "estimate" / "resources.json")
    if resources.layers is None:
        raise FlowError(f"{vdir / 'estimate' / 'resources.json'}: no per-layer estimate; the planner needs "
                        "estimate.method analytic or yosys")  # fmt: skip
    sites = compare_fault_sites(vdir, cfg.inject)
    n = summary.total.n_faults
    rate: dict[str, float] = {}
    for name, block in summary.layers.items():
        layer = _owner(name)
        rate[layer] = rate.get(layer, 0.0) + block.critical.count / n * sites
    lut_dsp: dict[str, float] = {}
    for entry in resources.layers:
        layer = _owner(entry["name"])
        lut_dsp[layer] = lut_dsp.get(layer, 0.0) + entry["LUT"] + entry["DSP"]
    total = resources.total["LUT"] + resources.total["DSP"]
    return {"rate": rate, "lut_dsp": lut_dsp, "lut_dsp_total": total, "faults": n, "sites": sites}


def _owner(name: str) -> str:
    """The weight layer an array's or estimate's layer belongs to: a copy or correction layer's hardened layer."""
    layer = name.removesuffix("_correction")
    if layer != name and correction_name(layer) == name:
        return layer
    return copy_of(name) or name


def _effectiveness(results: dict, costs: dict, cfg: RunConfig) -> dict:
    """measure.json: per layer R(l); per layer and policy R_p(l), e(l, p), and the unit cost per metric."""
    base = results["baseline"]
    layers = {}
    for layer, cost in costs.items():
        entry = {"rate": base["rate"].get(layer, 0.0), "channels": cost.channels, "policies": {}}
        for name, figures in results.items():
            if name == "baseline":
                continue
            hardened = figures["rate"].get(layer, 0.0)
            extra = figures["lut_dsp"].get(layer, 0.0) - base["lut_dsp"].get(layer, 0.0)
            copies = COPIES[Policy(name)]
            entry["policies"][name] = {
                "rate": hardened,
                "effectiveness": 1.0 - hardened / entry["rate"] if entry["rate"] > 0 else 0.0,
                "unit_cost": {
                    CostMetric.LUT_DSP.value: max(0.0, extra) / cost.channels,
                    CostMetric.MACS.value: copies * cost.macs_per_channel,
                    CostMetric.PARAMS.value: copies * cost.params_per_channel,
                },
            }
        layers[layer] = entry
    totals = {m.value: sum(getattr(c, m.value) for c in costs.values()) for m in (CostMetric.MACS, CostMetric.PARAMS)}
    totals[CostMetric.LUT_DSP.value] = base["lut_dsp_total"]
    return {"faults": base["faults"], "baseline_total": totals, "layers": layers}


def plan_harden(cfg: RunConfig, state: RunState, ranking, path: Path) -> tuple[dict, dict]:
    """Measure (or reuse), plan, and write ``harden/plan.json``; returns the selection and each layer's policy."""
    if ranking is None:
        raise FlowError("harden: selection 'plan' needs a vulnerability ranking; run step 'rank'")
    figures = measure(cfg, state)
    layers = target_layers(layer_costs(state.model), cfg.harden)
    plan = plan_from_figures(figures, ranking.scores, cfg.harden, layers)
    write_json(path, plan_record(plan, figures, cfg.harden, ranking.method))
    return {c.layer: list(c.channels) for c in plan.choices}, {c.layer: Policy(c.policy) for c in plan.choices}


def plan_from_figures(figures: dict, scores: dict, cfg: HardenConfig, layers: list[str]) -> Plan:
    """The optimal plan for the measured figures over ``layers`` (harden.budget % of the baseline's
    harden.budget_metric, or harden.target_reduction_pct)."""
    metric = cfg.budget_metric.value
    missing = [name for name in layers if name not in scores]
    if missing:
        raise FlowError(f"harden: the ranking has no scores for layer(s) {missing}; rank this model again")
    rates = {name: figures["layers"][name]["rate"] for name in layers}
    options = [
        LayerOption(name, p.value, block["effectiveness"], block["unit_cost"][metric])
        for name in layers
        for p in cfg.plan_policies
        for block in [figures["layers"][name]["policies"][p.value]]
    ]
    if cfg.target_reduction_pct is not None:
        return plan_protection(rates, scores, options, target_reduction=cfg.target_reduction_pct / 100.0)
    return plan_protection(rates, scores, options, budget=cfg.budget / 100.0 * figures["baseline_total"][metric])


def plan_record(plan: Plan, figures: dict, cfg: HardenConfig, ranking_method: str) -> dict:
    """harden/plan.json: every choice with its predicted cost and benefit, the totals and the measured inputs."""
    metric = cfg.budget_metric.value
    reference = figures["baseline_total"][metric]
    return {
        "budget_metric": metric,
        "budget_pct": None if cfg.target_reduction_pct is not None else cfg.budget,
        "target_reduction_pct": cfg.target_reduction_pct,
        "ranking": ranking_method,
        "predicted_reduction_pct": round(100.0 * plan.predicted_reduction, 3),
        "cost": plan.cost,
        "cost_pct": round(100.0 * plan.cost / reference, 3) if reference else None,
        "choices": [
            {
                "layer": c.layer,
                "policy": c.policy,
                "channels": list(c.channels),
                "cost": c.cost,
                "predicted_reduction_pct": round(100.0 * c.benefit / plan.baseline_rate, 3),
            }
            for c in plan.choices
        ],
        "measured": figures,
    }
