"""Comparison benchmark on lenet/digits: every variant of examples/compare_lenet.yaml at more hardening ratios (or
budgets) and with more faults; prints the table and checks the goal "selective hardening reaches >= 90 % of full
TMR's critical-SDC reduction at <= 25 % of full TMR's LUT+DSP overhead" for every selective variant, on the
config's compare.basis (per_bit: critical failure rate at equal per-bit upset rate; per_fault: rate per fault).

Usage: .venv/bin/python bench/bench_compare.py [--config examples/compare_lenet.yaml] [--ratios 0.1,0.2,0.3,0.5]
       [--budgets 5,10,20] [--faults 1000] [--out runs/bench_compare] [--basis per_bit|per_fault]
e.g. --config examples/budget_tmr_lenet.yaml --ratios '' --budgets 5,10,20 (selective TMR under cost budgets).
A rerun with the same arguments reuses the finished variants.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "compare_lenet.yaml"
SHOWN = ("variant", "fault_free_accuracy", "critical_rate", "critical_ci95", "fault_sites", "per_bit_relative_rate",
         "per_bit_relative_ci95", "fit", "LUT", "FF", "DSP", "BRAM_18K", "latency_cycles", "LUT_overhead_pct",
         "macs_overhead_pct", "fits_board")  # fmt: skip
REDUCTION_GOAL, COST_GOAL = 0.90, 0.25


def _cost(row) -> float:
    return row.LUT + row.DSP


def goal_check(rows: list) -> list[tuple[str, float, float, bool]]:
    """Per selective/pruned+hardened row (flow.compare_table.ComparisonRow): (variant, share of TMR's critical
    reduction, share of TMR's LUT+DSP overhead, goal met), the reduction on the rows' basis (basis_of)."""
    from flow.compare_table import basis_of, rate

    basis = basis_of(rows)
    base, tmr = rows[0], next(r for r in rows if r.variant == "full_tmr")
    gain = rate(base, basis) - rate(tmr, basis)
    spend = _cost(tmr) - _cost(base)
    result = []
    for row in rows:
        if row.kind.startswith("selective") or row.kind == "pruned_hardened":
            reduction = (rate(base, basis) - rate(row, basis)) / gain
            cost = (_cost(row) - _cost(base)) / spend
            result.append((row.variant, reduction, cost, reduction >= REDUCTION_GOAL and cost <= COST_GOAL))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(EXAMPLE))
    parser.add_argument("--ratios", default="0.1,0.2,0.3,0.5")
    parser.add_argument("--budgets", default="", help="hardening budgets in %% of the baseline's MACs")
    parser.add_argument("--faults", type=int, default=1000)
    parser.add_argument("--out", default="runs/bench_compare")
    parser.add_argument("--basis", choices=("per_bit", "per_fault"), help="override compare.basis (no case reruns)")
    args = parser.parse_args()

    import yaml

    from flow.compare import compare
    from flow.compare_table import cells
    from flow.config import config_from_dict

    plain = yaml.safe_load(Path(args.config).read_text())
    plain["compare"]["ratios"] = [float(r) for r in args.ratios.split(",") if r]
    plain["compare"]["budgets"] = [float(b) for b in args.budgets.split(",") if b]
    plain["inject"]["count"] = args.faults
    if args.basis:
        plain["compare"]["basis"] = args.basis
    cfg = config_from_dict(plain, f"{args.config} (bench overrides)")
    start = time.perf_counter()
    rows = compare(cfg, Path(args.out))
    seconds = time.perf_counter() - start
    print(
        f"{cfg.model.name}/{cfg.data.name}, {args.faults} single bit flips in weights+biases per variant, "
        f"{cfg.inject.samples} test images, ranking {cfg.rank.method}, board {cfg.board.name}, "
        f"analytic estimate ({seconds:.0f} s)"
    )
    print("  ".join(f"{c:>18}" for c in SHOWN))
    for row in rows:
        print("  ".join(f"{cells(row)[c]:>18}" for c in SHOWN))
    print(f"\ngoal: >= {REDUCTION_GOAL:.0%} of full TMR's critical-SDC reduction at <= {COST_GOAL:.0%} of its LUT+DSP "
          f"overhead (basis {cfg.compare.basis.value})")  # fmt: skip
    checks = goal_check(rows)
    for name, reduction, cost, met in checks:
        print(f"  {name:<24} reduction {reduction:7.1%} of TMR's   cost {cost:7.1%} of TMR's   {'MET' if met else '-'}")
    within = [c for c in checks if c[2] <= COST_GOAL]
    if within:
        best = max(within, key=lambda c: c[1])
        print(
            f"closest within the cost limit: {best[0]} ({best[1]:.1%} of TMR's reduction at {best[2]:.1%} of its cost)"
        )
    print(f"goal met by: {', '.join(c[0] for c in checks if c[3]) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
