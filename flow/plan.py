"""The protection planner: per layer, which correction policy protects how many of its most vulnerable channels,
to remove as much of the predicted critical failure rate as a budget allows (or reach a target reduction at the
least cost). An exact multiple-choice knapsack solved as a mixed-integer program (scipy's ``milp``, HiGHS).

The prediction, per layer l and policy p (measured by flow/plan_measure.py):
  R(l)     the baseline's critical failures per unit of per-bit upset rate from faults in l's arrays (sites x rate)
  e(l, p)  the share of R(l) that protecting every channel of l with p removes, on the per-bit basis: the copies'
           own sites and failures are counted (1 - R_p(l) / R(l)); may be negative
  share(l, c)  channel c's part of R(l): its vulnerability score over the layer's sum (flow/rank.py)
Protecting the top-k channels of l with p then removes e(l, p) R(l) (share of the top k), at k x unit_cost(l, p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from flow.errors import FlowError


@dataclass(frozen=True)
class LayerOption:
    """What protecting channels of one layer with one policy buys and costs (per channel)."""

    layer: str
    policy: str
    effectiveness: float  # e(l, p)
    unit_cost: float  # cost of protecting one more channel (copies + correction), in the budget's unit


@dataclass(frozen=True)
class Choice:
    layer: str
    policy: str
    channels: tuple[int, ...]  # ascending
    cost: float
    benefit: float  # predicted critical failures removed (unit of ``baseline_rate``)


@dataclass(frozen=True)
class Plan:
    choices: tuple[Choice, ...]  # one per protected layer, in the order of the layers given
    baseline_rate: float  # sum of R(l) over the planned layers
    budget: float | None
    target_reduction: float | None

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.choices)

    @property
    def predicted_reduction(self) -> float:
        """Predicted share of the baseline's critical failure rate removed (0..1)."""
        return sum(c.benefit for c in self.choices) / self.baseline_rate if self.baseline_rate > 0 else 0.0


def channel_shares(scores: np.ndarray) -> np.ndarray:
    """Each channel's share of its layer's failure rate from its vulnerability score (negative scores count 0;
    a layer without a positive score shares evenly)."""
    positive = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)
    total = positive.sum()
    return positive / total if total > 0 else np.full(len(positive), 1.0 / max(1, len(positive)))


def _candidates(rates: dict[str, float], scores: dict[str, np.ndarray], options: list[LayerOption]) -> list[Choice]:
    """Every (layer, policy, top-k) with a positive predicted benefit; ties in score keep the lower channel."""
    result = []
    for option in options:
        if option.layer not in rates or option.layer not in scores:
            raise FlowError(f"plan: layer '{option.layer}' has no measured rate or no vulnerability score")
        values = np.asarray(scores[option.layer], dtype=np.float64)
        order = np.lexsort((np.arange(len(values)), -values))
        cumulative = np.cumsum(channel_shares(values)[order])
        for k in range(1, len(values) + 1):
            benefit = option.effectiveness * rates[option.layer] * float(cumulative[k - 1])
            if benefit > 0:
                channels = tuple(sorted(int(c) for c in order[:k]))
                result.append(Choice(option.layer, option.policy, channels, k * option.unit_cost, benefit))
    return result


def plan_protection(
    rates: dict[str, float],
    scores: dict[str, np.ndarray],
    options: list[LayerOption],
    budget: float | None = None,
    target_reduction: float | None = None,
) -> Plan:
    """The optimal plan: at most one (policy, top-k channels) per layer, maximising the predicted benefit within
    ``budget`` (total cost), or, with ``target_reduction`` (0..1 of the baseline's rate), reaching it at the least
    cost. Exactly one of the two must be given. Deterministic."""
    if (budget is None) == (target_reduction is None):
        raise FlowError("plan: give exactly one of a budget and a target reduction")
    total = float(sum(rates.values()))
    candidates = _candidates(rates, scores, options)
    layers = list(dict.fromkeys(o.layer for o in options))
    if not candidates:
        return Plan((), total, budget, target_reduction)
    costs = np.array([c.cost for c in candidates])
    benefits = np.array([c.benefit for c in candidates])
    one_per_layer = np.array([[c.layer == layer for c in candidates] for layer in layers], dtype=float)
    if target_reduction is not None and _best(candidates, layers) < target_reduction * total:
        raise FlowError(f"plan: a {100 * target_reduction:g} % reduction is not reachable with these policies "
                        f"(predicted at most {100 * _best(candidates, layers) / total:.1f} %)")  # fmt: skip
    limit, needed = budget, None if target_reduction is None else target_reduction * total
    for _ in range(3):  # the solver's feasibility tolerance may overspend by a hair: solve again a hair below
        chosen = _solve(candidates, costs, benefits, one_per_layer, limit, needed)
        spent = sum(c.cost for c in chosen)
        if budget is None or spent <= budget:
            break
        limit -= 2 * (spent - budget)
    else:
        raise FlowError(f"plan: the optimiser overspent the budget {budget} ({spent})")
    order = {layer: i for i, layer in enumerate(layers)}
    return Plan(tuple(sorted(chosen, key=lambda c: order[c.layer])), total, budget, target_reduction)


def _solve(candidates, costs, benefits, one_per_layer, budget, needed) -> list[Choice]:
    """One binary variable per candidate; at most one per layer; within the budget (maximise the benefit) or
    reaching ``needed`` (minimise the cost)."""
    constraints = [LinearConstraint(one_per_layer, 0, 1)]
    if budget is not None:
        constraints.append(LinearConstraint(costs[None, :], -np.inf, budget))
        objective = -benefits
    else:
        constraints.append(LinearConstraint(benefits[None, :], needed, np.inf))
        objective = costs
    result = milp(objective, constraints=constraints, integrality=np.ones(len(candidates)), bounds=Bounds(0, 1),
                  options={"mip_rel_gap": 0.0})  # fmt: skip
    if result.x is None:
        raise FlowError(f"plan: the optimiser found no plan ({result.message})")
    return [candidates[i] for i in np.flatnonzero(np.round(result.x) == 1)]


def _best(candidates: list[Choice], layers: list[str]) -> float:
    """The largest benefit any plan can have (the best candidate of every layer)."""
    return sum(max((c.benefit for c in candidates if c.layer == layer), default=0.0) for layer in layers)
