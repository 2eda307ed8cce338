"""The report's matplotlib figures, each returned as PNG bytes (None when the run holds no data for it)."""

from __future__ import annotations

import io

import numpy as np

from flow.compare import FULLY_HARDENED, SWEPT_BY_BUDGET, SWEPT_BY_HARDEN_RATIO, SWEPT_BY_PRUNE_RATIO
from flow.compare_table import (
    BASIS_LABELS,
    ComparisonRow,
    FaultModelRow,
    basis_of,
    fault_model_matrix,
    rate,
    rate_interval,
)
from flow.config import Variant
from flow.hardware.estimate import RESOURCE_KEYS
from flow.rank_report import plot_ranking

POLICY_KINDS = (*SWEPT_BY_HARDEN_RATIO, *SWEPT_BY_BUDGET)  # a line each in the critical-vs-cost plot
REFERENCE_KINDS = (Variant.BASELINE, *FULLY_HARDENED)  # horizontal references there
RESOURCE_OVERHEADS = (*RESOURCE_KEYS, "latency_cycles")
PRUNING_LABELS = {Variant.PRUNED: "vulnerability", Variant.PRUNED_L1: "l1",
                  Variant.PRUNED_HARDENED: "vulnerability + hardened"}  # fmt: skip


def _pyplot():
    import matplotlib  # matplotlib + pyplot: ~0.6 s to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def vulnerability(ranking) -> bytes | None:
    """Per-layer bars of every channel's vulnerability (rank step's plot)."""
    if ranking is None:
        return None
    buffer = io.BytesIO()
    plot_ranking(ranking, buffer)
    return buffer.getvalue()


def cost_overhead_pct(row: ComparisonRow, base: ComparisonRow) -> float:
    """LUT+DSP overhead of ``row`` in % of ``base`` (the hardening cost of the plots and the goal check)."""
    cost, reference = (r.LUT + r.DSP for r in (row, base))
    return 100.0 * (cost - reference) / reference if reference else 0.0


def _point_label(row: ComparisonRow) -> str:
    """b20% for a hardening budget, r0.3 for a ratio, '' for a case hardened as harden.* configures it."""
    budget, ratio = row.harden_budget_pct, row.harden_ratio
    return f"b{budget:g}%" if budget is not None else f"r{ratio:g}" if ratio is not None else ""


def cost_series(rows: list[ComparisonRow]) -> dict[Variant, list[tuple[float, float, float, float, str]]]:
    """Per selective policy, its (LUT+DSP overhead %, rate, low, high, label) points by cost: ratio (r0.3) and
    budget (b20%) rows alike, the rate on the table's basis (rows whose rate is undefined are left out)."""
    basis = basis_of(rows)
    series: dict[str, list] = {}
    for row in rows:
        value = rate(row, basis)
        if row.kind in POLICY_KINDS and value is not None:
            point = (cost_overhead_pct(row, rows[0]), value, *rate_interval(row, basis), _point_label(row))
            series.setdefault(row.kind, []).append(point)
    return {kind: sorted(points) for kind, points in series.items()}


def critical_vs_cost(rows: list[ComparisonRow]) -> bytes | None:
    """Critical failure rate on the table's basis (with its 95 % interval) against the LUT+DSP overhead, one line
    per selective policy (``cost_series``); the baseline and full DMR/TMR as horizontal references."""
    series = cost_series(rows)
    if not series:
        return None
    basis = basis_of(rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, points in series.items():
        x, y, lo, hi = (np.array([p[i] for p in points]) for i in range(4))
        ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=kind.value)
        for cost, value, *_, label in points:
            ax.annotate(label, (cost, value), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for row in rows:
        if row.kind in REFERENCE_KINDS and rate(row, basis) is not None:
            ax.axhline(rate(row, basis), linestyle="--", linewidth=1, color="grey")
            ax.annotate(row.variant, (ax.get_xlim()[0], rate(row, basis)), fontsize=7, va="bottom")
    ax.set_xlabel("LUT + DSP overhead vs baseline (%); r: hardening ratio, b: hardening budget")
    ax.set_ylabel(BASIS_LABELS[basis].replace(" (", "\n("))
    ax.legend(fontsize=8)
    return _png(fig)


def overhead_bars(rows: list[ComparisonRow]) -> bytes | None:
    """Grouped bars: LUT, FF, DSP, BRAM and latency overhead in % of the baseline, per variant."""
    if len(rows) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(rows)), 4))
    width = 0.8 / len(RESOURCE_OVERHEADS)
    x = np.arange(len(rows))
    for i, key in enumerate(RESOURCE_OVERHEADS):
        values = [getattr(r, f"{key}_overhead_pct") or 0.0 for r in rows]
        ax.bar(x + (i - len(RESOURCE_OVERHEADS) / 2 + 0.5) * width, values, width, label=key)
    ax.set_xticks(x, [r.variant for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("overhead vs baseline (%)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=8, ncol=len(RESOURCE_OVERHEADS))
    return _png(fig)


def front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The (cost, rate, name) points no other point beats on both (cost <= and rate <=, not equal), by cost."""
    return sorted(
        p for p in points if not any(q[0] <= p[0] and q[1] <= p[1] and (q[0], q[1]) != (p[0], p[1]) for q in points)
    )


def pareto_front(rows: list[ComparisonRow]) -> tuple[list[str], bytes | None]:
    """Critical failure rate on the table's basis against LUT+DSP overhead; the variants no other variant beats on
    both are the front (rows whose rate is undefined are left out). Returns (front variant names, PNG)."""
    basis = basis_of(rows)
    points = [(cost_overhead_pct(r, rows[0]), rate(r, basis), r.variant) for r in rows if rate(r, basis) is not None]
    if len(points) < 2:
        return [], None
    best = front(points)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for cost, value, name in points:
        ax.scatter(cost, value, color="tab:blue")
        ax.annotate(name, (cost, value), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.plot([c for c, _, _ in best], [v for _, v, _ in best], color="tab:red", label="front")
    ax.set_xlabel("LUT + DSP overhead vs baseline (%)")
    ax.set_ylabel(BASIS_LABELS[basis].replace(" (", "\n("))
    ax.legend(fontsize=8)
    return [name for _, _, name in best], _png(fig)


def accuracy_vs_pruning(rows: list[ComparisonRow]) -> bytes | None:
    """Fault-free accuracy against the pruning ratio, vulnerability criterion vs L1 (and pruned+hardened)."""
    pruned = [r for r in rows if r.kind in SWEPT_BY_PRUNE_RATIO]
    if not pruned:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind in SWEPT_BY_PRUNE_RATIO:
        points = sorted((r.prune_ratio, r.fault_free_accuracy) for r in pruned if r.kind is kind)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=PRUNING_LABELS[kind])
    ax.axhline(rows[0].fault_free_accuracy, linestyle="--", color="grey", label="baseline")
    ax.set_xlabel("pruning ratio (fraction of filters/neurons removed per layer)")
    ax.set_ylabel("test accuracy (no fault)")
    ax.legend(fontsize=8)
    return _png(fig)


def fault_model_bars(rows: list[FaultModelRow]) -> bytes | None:
    """Grouped bars: per fault model (a group), each variant's critical rate per fault with its 95 % interval as
    error bars; a variant without sites of a fault model has no bar there."""
    if not rows:
        return None
    names, matrix = fault_model_matrix(rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(names) * max(1, len(matrix)) / 2), 4))
    width = 0.8 / len(matrix)
    x = np.arange(len(names))
    for i, (variant, by_name) in enumerate(matrix.items()):
        found = [(j, by_name[n]) for j, n in enumerate(names) if n in by_name and by_name[n].critical_rate is not None]
        if not found:
            continue
        rates = np.array([r.critical_rate for _, r in found])
        lo, hi = (np.array([r.critical_ci95[k] for _, r in found]) for k in (0, 1))
        offsets = x[[j for j, _ in found]] + (i - len(matrix) / 2 + 0.5) * width
        ax.bar(offsets, rates, width, yerr=[rates - lo, hi - rates], capsize=2, label=variant)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("critical-SDC rate per fault\n(95 % Wilson interval)")
    ax.legend(fontsize=8)
    return _png(fig)
