"""Ranking outputs: ranking.json, the vulnerability plot, and validation of methods against fault injection."""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO

import numpy as np

from flow.rank import Ranking
from flow.rundir import write_atomic, write_json


def ranking_to_dict(ranking: Ranking) -> dict:
    """Per layer: channel index, score, normalised score (/ global max) and rank (0 = most vulnerable);
    plus the global ranking over all layers."""
    top = max((float(v.max()) for v in ranking.scores.values() if v.size), default=0.0) or 1.0
    layers = {}
    for name, values in ranking.scores.items():
        rank_of = np.empty(len(values), dtype=int)
        rank_of[ranking.order(name)] = np.arange(len(values))
        extras = ranking.extras.get(name, {})
        channels = []
        for c, score in enumerate(values):
            row = {"index": c, "score": float(score), "normalized": float(score) / top, "rank": int(rank_of[c])}
            row.update({key: vals[c] for key, vals in extras.items()})
            channels.append(row)
        layers[name] = {"type": ranking.layer_types[name], "channels": channels}
    global_rows = [
        {"layer": layer, "index": c, "score": float(ranking.scores[layer][c]), "rank": r}
        for r, (layer, c) in enumerate(ranking.global_order())
    ]
    return {
        "method": ranking.method,
        "params": ranking.params,
        "seconds": round(ranking.seconds, 4),
        "normalization": "normalized = score / max score over all layers; larger = more vulnerable",
        "layers": layers,
        "global": global_rows,
    }


def ranking_from_dict(data: dict) -> Ranking:
    """Read back what ``ranking_to_dict`` wrote."""
    scores = {name: np.array([c["score"] for c in layer["channels"]]) for name, layer in data["layers"].items()}
    types = {name: layer["type"] for name, layer in data["layers"].items()}
    return Ranking(data["method"], scores, types, float(data["seconds"]), data.get("params", {}))


def write_ranking(ranking: Ranking, path: Path) -> Path:
    write_json(path, ranking_to_dict(ranking))
    return path


def top_overlap(scores: np.ndarray, reference: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the reference's top ``fraction`` channels that ``scores`` also puts in its top ``fraction``."""
    k = max(1, math.ceil(fraction * len(scores)))
    top = set(np.argsort(-scores, kind="stable")[:k])
    ref = set(np.argsort(-reference, kind="stable")[:k])
    return len(top & ref) / k


def _correlations(scores: np.ndarray, reference: np.ndarray) -> dict:
    from scipy.stats import kendalltau, spearmanr  # scipy.stats: ~0.9 s to import

    def clean(value: float) -> float | None:
        return None if value is None or not np.isfinite(value) else round(float(value), 4)

    if len(scores) < 2:
        return {"spearman": None, "kendall": None, "top10_overlap": top_overlap(scores, reference), "n": len(scores)}
    return {
        "spearman": clean(spearmanr(scores, reference).statistic),
        "kendall": clean(kendalltau(scores, reference).statistic),
        "top10_overlap": round(top_overlap(scores, reference), 4),
        "n": len(scores),
    }


def validate(rankings: dict[str, Ranking], reference: str = "fi") -> dict:
    """Spearman, Kendall and top-10 % overlap of every method against the reference, per layer and global."""
    ref = rankings[reference]
    ref_all = np.concatenate(list(ref.scores.values()))
    report = {"reference": reference, "reference_seconds": round(ref.seconds, 4), "methods": {}}
    for name, ranking in rankings.items():
        if name == reference:
            continue
        every = np.concatenate([ranking.scores[layer] for layer in ref.scores])
        report["methods"][name] = {
            "seconds": round(ranking.seconds, 4),
            "cost_vs_reference": round(ranking.seconds / ref.seconds, 6) if ref.seconds else None,
            "global": _correlations(every, ref_all),
            "layers": {layer: _correlations(ranking.scores[layer], ref.scores[layer]) for layer in ref.scores},
        }
    return report


def plot_ranking(ranking: Ranking, path: Path | BinaryIO) -> Path | BinaryIO:
    """One bar chart per layer: each channel's score over the layer's maximum, the layer's top 10 % in red; the
    label gives the layer's maximum relative to the global one (how the layers compare)."""
    import matplotlib  # matplotlib + pyplot: ~0.6 s to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ranking.scores)
    top = max((float(v.max()) for v in ranking.scores.values() if v.size), default=0.0) or 1.0
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.9 * len(names) + 0.6), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        layer_max = float(ranking.scores[name].max()) if ranking.scores[name].size else 0.0
        values = ranking.scores[name] / (layer_max or 1.0)
        k = max(1, math.ceil(0.1 * len(values)))
        colors = np.where(np.isin(np.arange(len(values)), ranking.order(name)[:k]), "tab:red", "tab:blue")
        ax.bar(np.arange(len(values)), values, color=colors)
        ax.set_ylabel(f"{name}\nmax = {layer_max / top:.2g}\nof global", rotation=0, ha="right", va="center")
        ax.set_xlim(-0.6, max(len(values), 2) - 0.4)
        ax.set_ylim(0, 1.05)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("output channel (filter / neuron); red = the layer's top 10 %")
    fig.suptitle(f"Vulnerability by {ranking.method} (each layer relative to its maximum)")
    fig.tight_layout()
    if isinstance(path, str | Path):
        write_atomic(path, lambda p: fig.savefig(p, dpi=110))
    else:  # a file object (the HTML report embeds the figure)
        fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return path
