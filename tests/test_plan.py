"""The protection planner's optimiser (flow/plan.py) against brute force on small constructed instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flow.errors import FlowError
from flow.plan import LayerOption, channel_shares, plan_protection

RATES = {"conv1": 2.0, "conv2": 5.0, "dense": 3.0}
SCORES = {"conv1": np.array([0.1, 0.7, 0.2]), "conv2": np.array([0.5, -0.1, 0.3, 0.2]), "dense": np.array([1.0, 1.0])}
OPTIONS = [
    LayerOption("conv1", "min", 0.5, 3.0),
    LayerOption("conv1", "vote", 1.0, 7.0),
    LayerOption("conv2", "min", 0.4, 5.0),
    LayerOption("conv2", "vote", 0.95, 11.0),
    LayerOption("dense", "min", 0.6, 1.0),
    LayerOption("dense", "vote", -0.2, 2.0),  # copies that fail more than they correct: never chosen
]


def brute_force(budget: float) -> float:
    """Best benefit over every per-layer choice of (none | policy, top k)."""
    per_layer = []
    for layer, rate in RATES.items():
        order = np.lexsort((np.arange(len(SCORES[layer])), -SCORES[layer]))
        shares = channel_shares(SCORES[layer])[order]
        choices = [(0.0, 0.0)]
        for option in (o for o in OPTIONS if o.layer == layer):
            for k in range(1, len(order) + 1):
                choices.append((k * option.unit_cost, option.effectiveness * rate * shares[:k].sum()))
        per_layer.append(choices)
    feasible = (combo for combo in itertools.product(*per_layer) if sum(c for c, _ in combo) <= budget)
    return max(sum(b for _, b in combo) for combo in feasible)


@pytest.mark.parametrize("budget", [0.0, 2.0, 6.0, 10.0, 17.0, 25.0, 40.0, 100.0])
def test_the_plan_is_the_brute_force_optimum_within_the_budget(budget):
    plan = plan_protection(RATES, SCORES, OPTIONS, budget=budget)
    assert plan.cost <= budget
    assert sum(c.benefit for c in plan.choices) == pytest.approx(brute_force(budget), abs=1e-9)
    assert len({c.layer for c in plan.choices}) == len(plan.choices)  # at most one option per layer
    assert all(c.policy != "vote" for c in plan.choices if c.layer == "dense")
    again = plan_protection(RATES, SCORES, OPTIONS, budget=budget)
    assert again == plan  # deterministic


def test_channels_are_the_most_vulnerable_of_their_layer():
    plan = plan_protection(RATES, SCORES, OPTIONS, budget=16.0)
    by_layer = {c.layer: c for c in plan.choices}
    for layer, choice in by_layer.items():
        k = len(choice.channels)
        top = np.lexsort((np.arange(len(SCORES[layer])), -SCORES[layer]))[:k]
        assert choice.channels == tuple(sorted(int(c) for c in top))
    assert "conv2" in by_layer and 1 not in by_layer["conv2"].channels  # a negative score adds cost, no benefit


def test_a_target_reduction_is_reached_at_the_least_cost():
    plan = plan_protection(RATES, SCORES, OPTIONS, target_reduction=0.5)
    assert plan.predicted_reduction >= 0.5 - 1e-12
    cheapest = min(b for b in np.arange(0, 60.5, 0.5) if brute_force(b) >= 0.5 * sum(RATES.values()) - 1e-12)
    assert plan.cost <= cheapest + 1e-9
    assert plan.cost > cheapest - 0.5 - 1e-9  # costs are multiples of 1: nothing cheaper than the grid allows


def test_bad_requests_are_refused_with_the_reason():
    with pytest.raises(FlowError, match="exactly one of a budget and a target"):
        plan_protection(RATES, SCORES, OPTIONS)
    with pytest.raises(FlowError, match="not reachable"):
        plan_protection(RATES, SCORES, OPTIONS, target_reduction=0.99)
    with pytest.raises(FlowError, match="layer 'pool'"):
        plan_protection(RATES, SCORES, [LayerOption("pool", "min", 0.5, 1.0)], budget=5)


def test_shares_ignore_negative_scores_and_split_evenly_without_any_positive():
    assert channel_shares(np.array([3.0, -1.0, 1.0])).tolist() == [0.75, 0.0, 0.25]
    assert channel_shares(np.array([0.0, -2.0])).tolist() == [0.5, 0.5]
