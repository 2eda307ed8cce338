"""The report's matplotlib figures, each returned as PNG bytes (None when the run holds no data for it)."""

from __future__ import annotations

import io

import numpy as np

POLICY_KINDS = ("selective_min", "selective_range", "selective_tmr")
REFERENCE_KINDS = ("baseline", "full_dmr", "full_tmr")
RESOURCE_OVERHEADS = ("LUT", "FF", "DSP", "BRAM_18K", "latency_cycles")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def vulnerability(ranking) -> bytes | None:
    """Per-layer bars of every channel's vulnerability (rank step's plot)."""
    if ranking is None:
        return None
    from flow.rank_report import plot_ranking

    buffer = io.BytesIO()
    plot_ranking(ranking, buffer)
    return buffer.getvalue()


def critical_vs_ratio(rows: list[dict]) -> bytes | None:
    """Critical-SDC rate (with its 95 % interval) against the hardening ratio, one line per policy; the baseline
    and full DMR/TMR as horizontal references."""
    swept = [r for r in rows if r["kind"] in POLICY_KINDS and _number(r["harden_ratio"]) is not None]
    if not swept:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind in POLICY_KINDS:
        points = sorted((float(r["harden_ratio"]), r) for r in swept if r["kind"] == kind)
        if not points:
            continue
        x = [p for p, _ in points]
        y = np.array([float(r["critical_rate"]) for _, r in points])
        ci = np.array([_interval(r["critical_ci95"]) for _, r in points])
        ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], marker="o", capsize=3, label=kind)
    for row in rows:
        if row["kind"] in REFERENCE_KINDS:
            ax.axhline(float(row["critical_rate"]), linestyle="--", linewidth=1, color="grey")
            ax.annotate(row["variant"], (ax.get_xlim()[0], float(row["critical_rate"])), fontsize=7, va="bottom")
    ax.set_xlabel("hardening ratio (fraction of filters/neurons duplicated per layer)")
    ax.set_ylabel("critical-SDC rate")
    ax.legend(fontsize=8)
    return _png(fig)


def _interval(text: str) -> tuple[float, float]:
    low, high = text.strip("[]").split(",")
    return float(low), float(high)


def overhead_bars(rows: list[dict]) -> bytes | None:
    """Grouped bars: LUT, FF, DSP, BRAM and latency overhead in % of the baseline, per variant."""
    if len(rows) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(rows)), 4))
    width = 0.8 / len(RESOURCE_OVERHEADS)
    x = np.arange(len(rows))
    for i, key in enumerate(RESOURCE_OVERHEADS):
        values = [_number(r[f"{key}_overhead_pct"]) or 0.0 for r in rows]
        ax.bar(x + (i - len(RESOURCE_OVERHEADS) / 2 + 0.5) * width, values, width, label=key)
    ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("overhead vs baseline (%)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=8, ncol=len(RESOURCE_OVERHEADS))
    return _png(fig)


def pareto_front(rows: list[dict]) -> tuple[list[str], bytes | None]:
    """Critical-SDC rate against LUT+DSP overhead; the variants no other variant beats on both are the front.
    Returns (front variant names, PNG)."""
    points = [(float(r["LUT"]) + float(r["DSP"]), float(r["critical_rate"]), r["variant"]) for r in rows]
    if len(points) < 2:
        return [], None
    base = points[0][0]
    front = [
        p for p in points if not any(q[0] <= p[0] and q[1] <= p[1] and (q[0], q[1]) != (p[0], p[1]) for q in points)
    ]
    front.sort()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for cost, rate, name in points:
        ax.scatter(100 * (cost - base) / base, rate, color="tab:blue")
        ax.annotate(name, (100 * (cost - base) / base, rate), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.plot([100 * (c - base) / base for c, _, _ in front], [r for _, r, _ in front], color="tab:red", label="front")
    ax.set_xlabel("LUT + DSP overhead vs baseline (%)")
    ax.set_ylabel("critical-SDC rate")
    ax.legend(fontsize=8)
    return [name for _, _, name in front], _png(fig)


def accuracy_vs_pruning(rows: list[dict]) -> bytes | None:
    """Fault-free accuracy against the pruning ratio, vulnerability criterion vs L1 (and pruned+hardened)."""
    kinds = {"pruned": "vulnerability", "pruned_l1": "l1", "pruned_hardened": "vulnerability + hardened"}
    pruned = [r for r in rows if r["kind"] in kinds]
    if not pruned:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, label in kinds.items():
        points = sorted((float(r["prune_ratio"]), float(r["fault_free_accuracy"])) for r in pruned if r["kind"] == kind)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.axhline(float(rows[0]["fault_free_accuracy"]), linestyle="--", color="grey", label="baseline")
    ax.set_xlabel("pruning ratio (fraction of filters/neurons removed per layer)")
    ax.set_ylabel("test accuracy (no fault)")
    ax.legend(fontsize=8)
    return _png(fig)
