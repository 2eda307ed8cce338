"""Comparison runs: the same fault campaign and the same resource estimate on several variants of one trained
model (baseline, selective hardening and selective TMR at several ratios or budgets, full DMR/TMR, pruned,
pruned+hardened), and one table of accuracy, critical-SDC rate, LUT/FF/DSP/BRAM, latency and overheads vs the baseline
(``<out>/compare/table.csv`` and ``table.md``)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from flow.config import HardenMode, Policy, PruneCriterion, RunConfig, Selection, Variant, config_to_dict
from flow.estimate import RESOURCE_KEYS
from flow.state import RunState, read_manifest

HARDENING = {
    Variant.SELECTIVE_MIN: (HardenMode.SELECTIVE, Policy.MIN),
    Variant.SELECTIVE_RANGE: (HardenMode.SELECTIVE, Policy.RANGE),
    Variant.SELECTIVE_TMR: (HardenMode.SELECTIVE_TMR, Policy.VOTE),
    Variant.FULL_DMR: (HardenMode.FULL_DMR, Policy.MIN),
    Variant.FULL_TMR: (HardenMode.FULL_TMR, Policy.VOTE),
    Variant.PRUNED_HARDENED: (HardenMode.SELECTIVE, Policy.MIN),
}
SWEPT_BY_HARDEN_RATIO = (Variant.SELECTIVE_MIN, Variant.SELECTIVE_RANGE, Variant.SELECTIVE_TMR)
SWEPT_BY_PRUNE_RATIO = (Variant.PRUNED, Variant.PRUNED_L1, Variant.PRUNED_HARDENED)
OVERHEAD_KEYS = ("params", "macs", *RESOURCE_KEYS, "latency_cycles")
COLUMNS = (
    "variant", "kind", "verified", "harden_ratio", "harden_budget_pct", "prune_ratio", "fault_free_accuracy", "faults",
    "critical_rate", "critical_ci95", "sdc_rate", "masked_rate", "mean_accuracy_under_fault", "params", "macs",
    *RESOURCE_KEYS, "latency_cycles",
    *(f"{key}_overhead_pct" for key in OVERHEAD_KEYS), "critical_reduction_pct", "fits_board",
    "estimate_method", "LUT_analytic", "LUT_yosys_calibrated", "LUT_yosys_over_analytic",
)  # fmt: skip


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
        if case.harden_budget is not None:
            harden = dataclasses.replace(harden, selection=Selection.BUDGET, budget=case.harden_budget)
        cfg = dataclasses.replace(cfg, harden=harden)
    return cfg, steps


def compare(cfg: RunConfig, out: Path) -> list[dict]:
    """Train and rank once in ``out`` (reused if there), then build, estimate and inject every case."""
    from flow.steps import run

    manifest = read_manifest(out)
    if "model" not in manifest or "ranking" not in manifest:
        user_model = cfg.model.path or cfg.model.json
        retrain = not user_model or "train" in (cfg.steps or ())  # a user's trained model is trained only if asked
        run(cfg, out, ["load", "train", "rank"] if retrain else ["load", "rank"])
        manifest = read_manifest(out)
    rows = []
    for case in cases(cfg):
        vdir = out / "compare" / case.label
        vcfg, steps = case_config(cfg, case)
        fingerprint = json.dumps({"config": config_to_dict(vcfg), "steps": steps}, sort_keys=True)
        done = vdir / "case.json"
        if not (done.is_file() and done.read_text() == fingerprint):  # a finished case is not run again
            _seed_variant_dir(out, manifest, vdir)
            run(vcfg, vdir, steps)
            done.write_text(fingerprint)
        rows.append(_row(case, vdir))
    rows = add_overheads(rows)
    _write_tables(rows, out / "compare")
    return rows


def unverified(rows: list[dict]) -> list[str]:
    """Variants whose C-sim failed verification: their rates describe hardware that is not the model."""
    return [row["variant"] for row in rows if row["verified"] != "yes"]


def _seed_variant_dir(out: Path, manifest: dict, vdir: Path) -> None:
    """Give a variant directory the trained model and the ranking (copies: each run directory stands alone)."""
    state = RunState(out=vdir)
    for key, step in (("model", "train"), ("ranking", "rank")):
        target = state.step_dir(step) / Path(manifest[key]).name
        shutil.copy2(out / manifest[key], target)
        state.record(**{key: target})
    state.record(unhardened_model=None)


def _row(case: Case, vdir: Path) -> dict:
    """One case's measured figures: fault campaign, model cost, resources and latency."""
    from flow.harden import layer_costs, total_cost
    from flow.modelio import load_model

    summary = json.loads((vdir / "inject" / "summary.json").read_text())
    verify = json.loads((vdir / "verify" / "report.json").read_text())
    resources = json.loads((vdir / "estimate" / "resources.json").read_text())
    total = summary["total"]
    cost = total_cost(layer_costs(load_model(vdir / read_manifest(vdir)["model"])))
    return {
        "variant": case.label,
        "kind": case.variant.value,
        "verified": _verdict(verify),
        "harden_ratio": "" if case.harden_ratio is None else case.harden_ratio,
        "harden_budget_pct": "" if case.harden_budget is None else case.harden_budget,
        "prune_ratio": "" if case.prune_ratio is None else case.prune_ratio,
        "fault_free_accuracy": round(summary["golden_accuracy"], 5),
        "faults": total["n_faults"],
        "critical_rate": round(total["critical"]["rate"], 5),
        "critical_ci95": "[{:.4f}, {:.4f}]".format(*total["critical"]["ci95"]),
        "sdc_rate": round(total["sdc"]["rate"], 5),
        "masked_rate": round(total["masked"]["rate"], 5),
        "mean_accuracy_under_fault": round(total["mean_accuracy"], 5),
        "params": cost["params"],
        "macs": cost["macs"],
        **resources["total"],
        "latency_cycles": resources["latency"]["cycles"],
        "fits_board": resources["fits"],
        **_estimator_columns(resources),
    }


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


def _estimator_columns(resources: dict) -> dict:
    """The analytic LUTs (raw and calibrated to yosys) beside the method's own, and yosys/analytic when measured."""
    analytic = resources if resources["method"] == "analytic" else resources.get("analytic", {})  # yosys keeps it
    return {
        "estimate_method": resources["method"],
        "LUT_analytic": analytic["total"]["LUT"] if "total" in analytic else "",
        "LUT_yosys_calibrated": analytic.get("yosys_calibrated", {}).get("LUT", ""),
        "LUT_yosys_over_analytic": resources.get("yosys_over_analytic", {}).get("LUT", ""),
    }


def add_overheads(rows: list[dict]) -> list[dict]:
    """Overheads in % of the first row (the baseline) and the reduction of its critical-SDC rate in %."""
    base = rows[0]

    def pct(value: float, reference: float) -> float | str:
        return round(100.0 * (value - reference) / reference, 2) if reference else ""

    return [
        {
            **row,
            **{f"{key}_overhead_pct": pct(row[key], base[key]) for key in OVERHEAD_KEYS},
            "critical_reduction_pct": (
                round(100.0 * (base["critical_rate"] - row["critical_rate"]) / base["critical_rate"], 2)
                if base["critical_rate"]
                else ""
            ),
        }
        for row in rows
    ]


def _write_tables(rows: list[dict], directory: Path) -> None:
    with open(directory / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    (directory / "table.md").write_text("\n".join(lines) + "\n")
