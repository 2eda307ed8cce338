"""harden.selection: plan end to end on a tiny LeNet: the measurement runs, harden/plan.json, the hardened model
it describes (its own policy per layer, exact with no fault), reuse while nothing changed, and the config checks."""

from __future__ import annotations

import json

import pytest
from conftest import TINY

from flow.config import config_from_dict
from flow.errors import FlowError
from flow.harden import copy_name, layer_costs
from flow.modelio import load_model
from flow.state import read_manifest
from flow.steps import run

pytestmark = pytest.mark.slow

PLAN = {
    "selection": "plan",
    "budget": 30,
    "budget_metric": "lut_dsp",
    "plan_faults": 200,
    "plan_policies": ["min", "vote"],
}
BASE = {"inject": {"model": "flip", "sampling": "count", "count": 60, "samples": 20}, "rank": {"method": "first_order"}}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    cfg = config_from_dict({**TINY, **BASE, "harden": PLAN})
    run(cfg, out, ["load", "train", "rank", "harden", "convert", "verify"])
    return cfg, out


def test_plan_json_names_every_choice_within_the_budget(planned):
    _, out = planned
    plan = json.loads((out / "harden" / "plan.json").read_text())
    reference = plan["measured"]["baseline_total"]["lut_dsp"]
    assert plan["cost"] <= 0.30 * reference + 1e-9 and plan["cost_pct"] <= 30
    assert plan["choices"], "a 30 % LUT+DSP budget buys some protection on this model"
    measured = plan["measured"]["layers"]
    for choice in plan["choices"]:
        assert choice["policy"] in ("min", "vote")
        assert choice["channels"] == sorted(set(choice["channels"]))
        assert measured[choice["layer"]]["policies"][choice["policy"]]["effectiveness"] > 0
    assert plan["predicted_reduction_pct"] == pytest.approx(sum(c["predicted_reduction_pct"] for c in plan["choices"]),
                                                            abs=1e-2)  # fmt: skip
    vote = measured[plan["choices"][0]["layer"]]["policies"]["vote"]
    assert vote["effectiveness"] > 0.5  # a vote outvotes every single fault of the original and its copies


def test_the_hardened_model_is_the_plan_and_exact_with_no_fault(planned):
    _, out = planned
    plan = json.loads((out / "harden" / "plan.json").read_text())
    summary = json.loads((out / "harden" / "summary.json").read_text())
    assert summary["no_fault_bit_exact"] is True
    assert json.loads((out / "verify" / "report.json").read_text())["bit_exact"] is True
    costs = layer_costs(load_model(out / read_manifest(out)["model"]))
    for choice in plan["choices"]:
        copies = 2 if choice["policy"] == "vote" else 1
        for n in (1, 2):
            present = copy_name(choice["layer"], n) in costs
            assert present == (n <= copies), (choice, n)
        assert summary["layers"][choice["layer"]]["policy"] == choice["policy"]
        assert summary["layers"][choice["layer"]]["protected"] == choice["channels"]


def test_a_rerun_reuses_the_measurement_and_a_changed_input_measures_again(planned):
    cfg, out = planned
    done = out / "harden" / "plan" / "vote" / "case.json"
    stamp = done.stat().st_mtime_ns
    run(cfg, out, ["harden"])
    assert done.stat().st_mtime_ns == stamp
    changed = config_from_dict({**TINY, **BASE, "harden": {**PLAN, "plan_faults": 150}})
    run(changed, out, ["harden"])
    assert done.stat().st_mtime_ns != stamp
    plan = json.loads((out / "harden" / "plan.json").read_text())
    assert plan["measured"]["faults"] == 150


@pytest.mark.parametrize(
    ("harden", "message"),
    [
        ({"selection": "plan", "mode": "full_tmr"}, "mode: got 'full_tmr' with selection 'plan'"),
        ({"selection": "plan", "policy": "vote"}, "policy: got 'vote' with selection 'plan'"),
        ({"selection": "plan", "plan_policies": ["min", "min"]}, "plan_policies: got"),
        ({"selection": "budget", "budget_metric": "lut_dsp"}, "budget_metric: got 'lut_dsp' with selection 'budget'"),
        ({"selection": "plan", "target_reduction_pct": 120}, "target_reduction_pct"),
    ],
)
def test_bad_plan_configs_name_the_key(harden, message):
    with pytest.raises(FlowError, match=message):
        config_from_dict({"harden": harden})


def test_compare_sweeps_the_planner_over_budgets_and_measures_once(tmp_path):
    from flow.compare import Case, cases, compare
    from flow.config import Variant

    cfg = config_from_dict({**TINY, **BASE, "harden": {**PLAN, "plan_faults": 100, "plan_policies": ["vote"]},
                            "compare": {"variants": ["planned"], "budgets": [15, 40]}})  # fmt: skip
    assert cases(cfg) == [Case(Variant.BASELINE), Case(Variant.PLANNED, harden_budget=15),
                          Case(Variant.PLANNED, harden_budget=40)]  # fmt: skip
    rows = compare(cfg, tmp_path)
    assert [(r.kind, r.harden_budget_pct) for r in rows] == [(Variant.BASELINE, None), (Variant.PLANNED, 15),
                                                             (Variant.PLANNED, 40)]  # fmt: skip
    assert all(r.verified == "yes" for r in rows)
    plans = [json.loads((tmp_path / "compare" / r.variant / "harden" / "plan.json").read_text()) for r in rows[1:]]
    assert [p["budget_pct"] for p in plans] == [15, 40]
    assert plans[0]["cost_pct"] <= 15 and plans[1]["cost_pct"] <= 40
    assert plans[1]["predicted_reduction_pct"] >= plans[0]["predicted_reduction_pct"]
    assert plans[0]["measured"] == plans[1]["measured"]
    assert [r.predicted_reduction_pct for r in rows] == [None, *(p["predicted_reduction_pct"] for p in plans)]
    assert all(r.per_bit_reduction_pct is not None for r in rows[1:])  # the measured one, beside it
    first, second = (tmp_path / "compare" / r.variant / "harden" / "plan" / "vote" for r in rows[1:])
    assert (second / "time_per_step.json").read_text() == (first / "time_per_step.json").read_text()  # not rerun
