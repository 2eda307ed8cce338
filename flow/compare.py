"""Comparison runs: the same fault campaign on several hardening variants of one trained model, and a table of
critical-SDC rate, accuracy and overhead per variant (``<out>/compare/table.csv`` and ``table.md``)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

from flow.config import HardenMode, Policy, RunConfig, Variant
from flow.state import RunState, read_manifest

HARDENING = {
    Variant.SELECTIVE_MIN: (HardenMode.SELECTIVE, Policy.MIN),
    Variant.SELECTIVE_RANGE: (HardenMode.SELECTIVE, Policy.RANGE),
    Variant.SELECTIVE_TMR: (HardenMode.SELECTIVE_TMR, Policy.VOTE),
    Variant.FULL_DMR: (HardenMode.FULL_DMR, Policy.MIN),
    Variant.FULL_TMR: (HardenMode.FULL_TMR, Policy.VOTE),
}
COLUMNS = (
    "variant", "params", "params_overhead_pct", "macs", "macs_overhead_pct", "faults", "critical_rate",
    "critical_ci95", "sdc_rate", "masked_rate", "mean_accuracy_under_fault", "fault_free_accuracy",
)  # fmt: skip


def compare(cfg: RunConfig, out: Path) -> list[dict]:
    """Train and rank once in ``out`` (reused if there), then harden, convert and inject every variant."""
    from flow.steps import run

    manifest = read_manifest(out)
    if "model" not in manifest or "ranking" not in manifest:
        run(cfg, out, ["load", "train", "rank"])
        manifest = read_manifest(out)
    rows = []
    for variant in cfg.compare.variants:
        vdir = out / "compare" / variant.value
        _seed_variant_dir(out, manifest, vdir)
        vcfg = cfg
        steps = ["convert", "inject"]
        if variant is not Variant.BASELINE:
            mode, policy = HARDENING[variant]
            vcfg = dataclasses.replace(cfg, harden=dataclasses.replace(cfg.harden, mode=mode, policy=policy))
            steps = ["harden", *steps]
        run(vcfg, vdir, steps)
        rows.append(_row(variant, vdir))
    _write_tables(rows, out / "compare")
    return rows


def _seed_variant_dir(out: Path, manifest: dict, vdir: Path) -> None:
    """Give a variant directory the trained model and the ranking (copies: each run directory stands alone)."""
    state = RunState(out=vdir)
    for key, step in (("model", "train"), ("ranking", "rank")):
        target = state.step_dir(step) / Path(manifest[key]).name
        if not target.exists():
            shutil.copy2(out / manifest[key], target)
        state.record(**{key: target})
    state.record(unhardened_model=None)


def _row(variant: Variant, vdir: Path) -> dict:
    summary = json.loads((vdir / "inject" / "summary.json").read_text())
    total = summary["total"]
    row = {
        "variant": variant.value,
        "faults": total["n_faults"],
        "critical_rate": round(total["critical"]["rate"], 5),
        "critical_ci95": "[{:.4f}, {:.4f}]".format(*total["critical"]["ci95"]),
        "sdc_rate": round(total["sdc"]["rate"], 5),
        "masked_rate": round(total["masked"]["rate"], 5),
        "mean_accuracy_under_fault": round(total["mean_accuracy"], 5),
        "fault_free_accuracy": round(summary["golden_accuracy"], 5),
    }
    harden = vdir / "harden" / "summary.json"
    if harden.is_file():
        cost = json.loads(harden.read_text())["total"]
        row.update(
            params=cost["params_hardened"], params_overhead_pct=cost["params_overhead_pct"],
            macs=cost["macs_hardened"], macs_overhead_pct=cost["macs_overhead_pct"],
        )  # fmt: skip
    else:
        from flow.harden import layer_costs, total_cost
        from flow.modelio import load_model

        row.update(total_cost(layer_costs(load_model(vdir / read_manifest(vdir)["model"]))))
        row.update(params_overhead_pct=0.0, macs_overhead_pct=0.0)
    return {key: row[key] for key in COLUMNS}


def _write_tables(rows: list[dict], directory: Path) -> None:
    with open(directory / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    (directory / "table.md").write_text("\n".join(lines) + "\n")
