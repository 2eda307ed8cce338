"""Fault-model benchmark on the demo LeNet (examples/compare_faultmodels.yaml): baseline, selective DMR (min),
selective TMR (both at a hardening budget of 10 % of the MACs) and full TMR, each under every fault model of the
example (weight flip, weight 2-bit upset, transient and stuck-at-1 activation faults after the activations, faults
in the protection) and the same two activation faults before the activations (the hardened layers' own outputs,
their copies' and their corrections': what the vote sees);
prints per fault model and variant the critical rate with its Wilson 95 % interval, the per-bit rate relative to
the baseline under the same fault model, and the cost per fault (ms, one process); last, each fault model's mean
cost per fault.

Usage: .venv/bin/python bench/bench_faultmodels.py [--faults 500] [--budget 10] [--out runs/bench_faultmodels]
A rerun with the same arguments reuses the finished cases and campaigns.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "compare_faultmodels.yaml"
VARIANTS = ["baseline", "selective_min", "selective_tmr", "full_tmr"]
DATAPATH = ["weight", "bias", "copy", "correction"]
BEFORE = [  # beside the example's fault models
    {"name": f"act_{label}_before", "space": "activations", "model": model, "activation": "before", "targets": DATAPATH}
    for label, model in (("transient", "flip"), ("stuck1", "stuck1"))
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(EXAMPLE))
    parser.add_argument("--faults", type=int, default=500, help="faults per variant and fault model")
    parser.add_argument("--budget", type=float, default=10.0, help="hardening budget in %% of the baseline's MACs")
    parser.add_argument("--out", default="runs/bench_faultmodels")
    args = parser.parse_args()

    import yaml

    from flow.compare import compare
    from flow.compare_table import FaultModelRow, fault_model_matrix, mean_cost, read_table
    from flow.config import config_from_dict

    plain = yaml.safe_load(Path(args.config).read_text())
    plain["compare"].update(variants=VARIANTS, budgets=[args.budget], ratios=[])
    plain["compare"]["fault_models"] += BEFORE
    plain["inject"].update(count=args.faults, workers=1)  # one process: the cost per fault without a pool
    cfg = config_from_dict(plain, f"{args.config} (bench overrides)")
    start = time.perf_counter()
    compare(cfg, Path(args.out))
    seconds = time.perf_counter() - start
    rows = read_table(Path(args.out) / "compare" / "faultmodels.csv", FaultModelRow)
    print(f"{cfg.model.name}/{cfg.data.name}, {args.faults} faults per variant and fault model, "
          f"{cfg.inject.samples} test images, 1 process ({seconds:.0f} s)")  # fmt: skip
    names, matrix = fault_model_matrix(rows)
    for name in names:
        first = next(r for r in rows if r.fault_model == name)
        point = f" {first.activation.value}" if first.activation else ""
        print(f"\n{name}: {first.space.value}{point}, {first.model.value}, mbu {first.mbu}, targets {first.targets}")
        for variant, by_name in matrix.items():
            print("  " + _line(variant, by_name[name]))
    print("\ncost per fault (ms, mean over the variants):")
    for name in names:
        print(f"  {name:<22} {mean_cost(rows, name):>8}")
    return 0


def _line(variant: str, row) -> str:
    """One variant under one fault model: critical / faults, rate [95 % CI], per-bit rate vs baseline, ms/fault."""
    from flow.compare_table import cell, critical_text

    if not row.faults:
        return f"{variant:<24} n/a (no site of this fault model)"
    per_bit = "n/a" if row.per_bit_relative_rate is None else f"{row.per_bit_relative_rate:.3f}"
    return (f"{variant:<24} {row.critical_count:>4}/{row.faults:<4} critical {critical_text(row):<22} per-bit vs "
            f"baseline {per_bit:>6} {cell(row, 'per_bit_relative_ci95'):<18} sites {row.fault_sites:>7} "
            f"{row.per_fault_ms:8.3f} ms/fault")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
