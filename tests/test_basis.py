"""The failure-rate basis of `ftflow compare`: per fault vs per bit (fault sites x critical rate per fault), its
interval, FIT, and the plots, front and goal check ranking by the configured basis."""

import importlib.util
import math
from pathlib import Path

import pytest

from flow.compare import add_failure_rates, basis_of, rate, rate_interval
from flow.config import Basis, CompareConfig, config_from_dict
from flow.errors import FlowError
from flow.stats import ratio_interval, wilson_interval

Z = 2.2364766  # two-sided normal quantile at sqrt(0.95) = 97.47 %, each proportion's share of the 95 %


def _wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval written out, to check the library's against."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _row(variant: str, kind: str, k: int, n: int, sites: int, lut: float, **extra) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"variant": variant, "kind": kind, "critical_count": k, "faults": n, "critical_rate": round(k / n, 5),
            "critical_ci95": f"[{lo:.4f}, {hi:.4f}]", "fault_sites": sites, "LUT": lut, "DSP": 0, "harden_ratio": "",
            "harden_budget_pct": "", "prune_ratio": "", "fault_free_accuracy": 0.9, **extra}  # fmt: skip


def _rows(basis: Basis = Basis.PER_BIT) -> list[dict]:
    """Baseline 0.2 per fault over 1000 sites; a DMR that halves the per-fault rate with twice the sites (no gain
    per bit); a pruned model with the baseline's per-fault rate on half the sites; full TMR; a selective TMR under
    a budget whose per-fault reduction (95 %) shrinks per bit (85 %: three times the sites)."""
    rows = [
        _row("baseline", "baseline", 40, 200, 1000, 100),
        _row("selective_min_0.5", "selective_min", 20, 200, 2000, 120, harden_ratio=0.5),
        _row("pruned_0.5", "pruned", 40, 200, 500, 60, prune_ratio=0.5),
        _row("full_tmr", "full_tmr", 0, 200, 3000, 300),
        _row("selective_tmr_budget10", "selective_tmr", 2, 200, 3000, 140, harden_budget_pct=10.0),
    ]
    return add_failure_rates(rows, CompareConfig(basis=basis))


def test_twice_the_sites_at_half_the_rate_per_fault_is_the_baselines_rate():
    by_name = {row["variant"]: row for row in _rows()}
    dmr = by_name["selective_min_0.5"]
    assert dmr["per_bit_relative_rate"] == 1.0 and dmr["per_bit_reduction_pct"] == 0.0
    lo, hi = (float(v) for v in dmr["per_bit_relative_ci95"].strip("[]").split(","))
    assert lo < 1.0 < hi
    assert by_name["baseline"]["per_bit_relative_rate"] == 1.0  # the reference: 1 by definition
    assert by_name["baseline"]["per_bit_relative_ci95"] == "[1.0000, 1.0000]"
    assert by_name["pruned_0.5"]["per_bit_relative_rate"] == 0.5  # the same rate per fault on half the bits
    assert by_name["full_tmr"]["per_bit_relative_rate"] == 0.0 and by_name["full_tmr"]["per_bit_reduction_pct"] == 100
    assert by_name["selective_tmr_budget10"]["per_bit_relative_rate"] == pytest.approx(0.15)  # 3000 x 0.01 / 200


def test_fit_is_the_upset_rate_times_sites_times_the_critical_rate():
    rows = add_failure_rates([_row("baseline", "baseline", 40, 200, 2_000_000, 100)], CompareConfig(fit_per_mbit=50))
    assert rows[0]["fit"] == pytest.approx(50 * 2 * 0.2)  # 50 FIT/Mbit x 2 Mbit x 0.2
    lo, hi = wilson_interval(40, 200)
    assert rows[0]["fit_ci95"] == f"[{100 * lo:.4g}, {100 * hi:.4g}]"


def test_ratio_interval_is_the_ratio_of_the_wilson_bounds_at_sqrt_confidence():
    ratio, lo, hi = ratio_interval(10, 100, 20, 100)
    assert ratio == 0.5
    assert (lo, hi) == pytest.approx((0.16800, 1.48814), abs=1e-4)  # 0.050861 / 0.302755, 0.187247 / 0.125826
    (lo1, hi1), (lo0, hi0) = _wilson(10, 100), _wilson(20, 100)
    assert (lo, hi) == pytest.approx((lo1 / hi0, hi1 / lo0), rel=1e-5)
    assert ratio_interval(10, 100, 20, 100, scale=3.0) == pytest.approx((1.5, 3 * lo, 3 * hi))
    assert 1 / hi < 0.5 / 0.5 < 1 / lo  # swapping the proportions inverts the interval
    assert ratio_interval(20, 100, 10, 100) == pytest.approx((2.0, 1 / hi, 1 / lo))


def test_ratio_interval_with_no_failure_on_either_side():
    ratio, lo, hi = ratio_interval(0, 200, 40, 200, scale=3.0)
    assert ratio == 0.0 and lo == 0.0 and 0 < hi == pytest.approx(3 * _wilson(0, 200)[1] / _wilson(40, 200)[0])
    ratio, lo, hi = ratio_interval(5, 200, 0, 200)
    assert ratio is None and lo > 0 and hi == math.inf  # no baseline failure: no ratio
    rows = add_failure_rates([_row("baseline", "baseline", 0, 100, 10, 1), _row("v", "pruned", 3, 100, 10, 1)],
                             CompareConfig())  # fmt: skip
    assert rows[1]["per_bit_relative_rate"] == "" and rows[1]["per_bit_relative_ci95"].endswith("inf]")
    assert rate(rows[1], Basis.PER_BIT) is None and rate(rows[1], Basis.PER_FAULT) == 0.03


def test_ber_trials_compare_directly_whatever_the_sites():
    """A ber trial flips every bit with probability BER: its critical rate already counts the sites."""
    rows = [_row("baseline", "baseline", 40, 200, 1000, 1), _row("full_tmr", "full_tmr", 20, 200, 3000, 3)]
    ber = add_failure_rates(rows, CompareConfig(fit_per_mbit=100), ber=1e-4)
    assert ber[1]["per_bit_relative_rate"] == 0.5  # not 1.5
    assert ber[0]["fit"] == pytest.approx(100e-6 * 0.2 / 1e-4)  # P / BER upsets' worth of sites x p


def _bench():
    path = Path(__file__).resolve().parent.parent / "bench" / "bench_compare.py"
    spec = importlib.util.spec_from_file_location("bench_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_goal_check_uses_the_basis():
    goal_check = _bench().goal_check
    per_fault = {name: (share, cost, met) for name, share, cost, met in goal_check(_rows(Basis.PER_FAULT))}
    per_bit = {name: (share, cost, met) for name, share, cost, met in goal_check(_rows(Basis.PER_BIT))}
    assert per_fault["selective_tmr_budget10"] == pytest.approx((0.95, 0.2, True))
    assert per_bit["selective_tmr_budget10"] == pytest.approx((0.85, 0.2, False))  # three times the sites
    assert per_fault["selective_min_0.5"][0] == pytest.approx(0.5) and per_bit["selective_min_0.5"][0] == 0.0


def test_pareto_front_uses_the_basis():
    from flow import report_plots

    per_fault, png = report_plots.pareto_front(_rows(Basis.PER_FAULT))
    assert per_fault == ["pruned_0.5", "selective_min_0.5", "selective_tmr_budget10", "full_tmr"] and png
    per_bit, _ = report_plots.pareto_front(_rows(Basis.PER_BIT))
    assert per_bit == ["pruned_0.5", "selective_tmr_budget10", "full_tmr"]  # the DMR gains nothing per bit


def test_critical_vs_cost_plots_budget_rows_on_the_basis():
    from flow import report_plots

    rows = _rows(Basis.PER_BIT)
    series = report_plots.cost_series(rows)
    assert set(series) == {"selective_min", "selective_tmr"}
    (cost, value, lo, hi, label), = series["selective_tmr"]  # fmt: skip
    assert (cost, value, label) == (40.0, 0.15, "b10%") and lo < value < hi
    assert series["selective_min"][0][1:2] == (1.0,) and series["selective_min"][0][4] == "r0.5"
    assert report_plots.cost_series(_rows(Basis.PER_FAULT))["selective_min"][0][1] == 0.1
    only_budget = [row for row in rows if row["harden_ratio"] == ""]
    assert report_plots.critical_vs_cost(only_budget)[:4] == b"\x89PNG"  # dropped before the basis change


def test_table_shows_both_bases(tmp_path):
    from flow.compare import COLUMNS, _write_tables

    rows = [{column: "" for column in COLUMNS} | row for row in _rows(Basis.PER_FAULT)]
    _write_tables(rows, tmp_path)
    header = (tmp_path / "table.md").read_text().splitlines()[0]
    for column in ("critical_rate", "critical_reduction_pct", "fault_sites", "per_bit_relative_rate",
                   "per_bit_relative_ci95", "per_bit_reduction_pct", "fit", "basis"):  # fmt: skip
        assert f" {column} |" in header
    import csv

    with open(tmp_path / "table.csv", newline="") as f:
        read = list(csv.DictReader(f))
    assert basis_of(read) is Basis.PER_FAULT and rate(read[2], Basis.PER_BIT) == 0.5
    assert basis_of([{"variant": "old table"}]) is Basis.PER_FAULT  # written before the column existed
    with pytest.raises(FlowError, match="basis 'per_hour'; allowed: per_fault, per_bit"):
        basis_of([{"basis": "per_hour"}])


def test_basis_config():
    assert CompareConfig().basis is Basis.PER_BIT and CompareConfig().fit_per_mbit == 100.0
    cfg = config_from_dict({"compare": {"basis": "per_fault", "fit_per_mbit": 20}}, "t")
    assert cfg.compare.basis is Basis.PER_FAULT and cfg.compare.fit_per_mbit == 20.0
    with pytest.raises(FlowError, match=r"compare\.basis: got 'per_hour'.*allowed: per_fault, per_bit"):
        config_from_dict({"compare": {"basis": "per_hour"}}, "t")
    with pytest.raises(FlowError, match=r"compare\.fit_per_mbit"):
        config_from_dict({"compare": {"fit_per_mbit": 0}}, "t")


def test_basis_and_fit_do_not_rerun_cases():
    from flow.compare import _case_dict

    plain = config_from_dict({}, "t")
    changed = config_from_dict({"compare": {"basis": "per_fault", "fit_per_mbit": 5}}, "t")
    assert _case_dict(plain) == _case_dict(changed)
    assert _case_dict(plain) != _case_dict(config_from_dict({"compare": {"ratios": [0.2]}}, "t"))


def test_report_names_the_basis_and_its_front(tmp_path):
    from flow.compare import COLUMNS, _write_tables
    from flow.report import write_report

    (tmp_path / "compare").mkdir()
    rows = [{column: "" for column in COLUMNS} | row for row in _rows(Basis.PER_BIT)]
    _write_tables(rows, tmp_path / "compare")
    text = write_report(tmp_path).read_text()
    assert "Pareto front) (basis per_bit: critical failure rate vs baseline (per bit" in text
    assert "On the front (no variant is both cheaper and more resilient): pruned_0.5, selective_tmr_budget10, " in text
    assert 'alt="critical vs cost"' in text and "<th>per_bit_relative_rate</th>" in text


# ---- the per-bit rate from single faults against a ber campaign: the tiny LeNet, a selective DMR of it (min
# policy, half the filters/neurons duplicated) and its full-TMR twin; every weight, bias and correction array ----

TARGETS = ("weight", "bias", "correction")  # copies and vote/correction data are fault sites too
SAMPLES = 10  # test images per fault
SINGLE_FAULTS = {"base": 1500, "dmr": 1500, "tmr": 600}  # single bit flips
BER_TRIALS = {"base": 20000, "dmr": 20000, "tmr": 6000}
FLIPS_PER_TRIAL = 0.3  # expected flips per ber trial in the variant with the most sites (TMR); fewer in the others


@pytest.fixture(scope="module")
def dmr_project(fi_runs, tmp_path_factory):
    """fi_runs' base model hardened selectively (l1 ranking, ratio 0.5, min policy), compiled."""
    from flow.harden import harden_model, select_channels
    from flow.hardware.boards import resolve_board
    from flow.hls import compile_projects, project_of, write_project
    from flow.rank import Ranking, norm_scores

    _, cfg, state = fi_runs["base"]
    scores = norm_scores(state.model, 1)
    ranking = Ranking("l1", scores, {name: "x" for name in scores}, 0.0)
    harden = config_from_dict({"harden": {"mode": "selective", "policy": "min", "ratio": 0.5}}).harden
    model = harden_model(state.model, select_channels(state.model, ranking, harden), harden, state.data.x_train)
    out = tmp_path_factory.mktemp("dmr") / "hls_project"
    graph, _ = write_project(model, cfg.hls, resolve_board(cfg.board), 8, out)
    project = project_of(graph, cfg.hls, out)
    compile_projects([project], "O1")
    return project


def _campaign(lib, icfg, x, y, seed: int) -> tuple[int, int, set[int]]:
    """(critical outcomes, faults, flips of the critical ones) of a fault list; a ber trial that flips no bit is
    masked without a run."""
    from flow.campaign import evaluate
    from flow.faultlist import build_fault_list

    golden = lib.predict(x)
    faults = build_fault_list(lib.arrays, icfg, seed)
    flips = [len(fault) for fault in faults if fault and evaluate(lib, fault, x, y, golden)["outcome"] == "critical"]
    return len(flips), len(faults), set(flips)


def _interval(row: dict) -> tuple[float, float]:
    return rate_interval(row, Basis.PER_BIT)


@pytest.mark.slow
@pytest.mark.csim
def test_per_bit_rates_from_single_faults_agree_with_a_ber_campaign(fi_runs, dmr_project):
    """A ber campaign at one BER on every variant measures the per-bit comparison directly: its ratio of critical
    rates per trial agrees with sites x rate per single fault, and both differ from the per-fault ratio."""
    from flow.config import FaultModel, FaultSampling, InjectConfig, Target
    from flow.csim import FaultableLibrary
    from flow.faultlist import targeted_bits
    from flow.hls import HlsProject

    targets = tuple(Target(t) for t in TARGETS)
    projects = {"base": HlsProject.load(fi_runs["base"][0] / "convert" / "project.json"), "dmr": dmr_project,
                "tmr": HlsProject.load(fi_runs["tmr"][0] / "convert" / "project.json")}  # fmt: skip
    libs = {name: FaultableLibrary(project) for name, project in projects.items()}
    sites = {name: targeted_bits(lib.arrays, InjectConfig(targets=targets)) for name, lib in libs.items()}
    ber = FLIPS_PER_TRIAL / max(sites.values())
    data = fi_runs["base"][2].data
    x, y = data.x_test[:SAMPLES], data.y_test[:SAMPLES]
    single, trials, flips = [], [], {}
    for seed, (name, lib) in enumerate(libs.items()):
        icfg = InjectConfig(targets=targets, sampling=FaultSampling.COUNT, count=SINGLE_FAULTS[name])
        k, n, _ = _campaign(lib, icfg, x, y, seed)
        single.append({"variant": name, "critical_count": k, "faults": n, "fault_sites": sites[name]})
        icfg = InjectConfig(model=FaultModel.BER, ber=ber, count=BER_TRIALS[name], targets=targets)
        k, n, flips[name] = _campaign(lib, icfg, x, y, 100 + seed)
        trials.append({"variant": name, "critical_count": k, "faults": n, "fault_sites": sites[name]})
    by_fault = dict(zip(libs, single, strict=True))
    by_bit = dict(zip(libs, add_failure_rates(single, CompareConfig()), strict=True))
    by_ber = dict(zip(libs, add_failure_rates(trials, CompareConfig(), ber=ber), strict=True))
    print({name: (sites[name], by_bit[name], by_ber[name]) for name in libs}, f"BER {ber:.3g}", flips)
    assert sites["base"] < sites["dmr"] < sites["tmr"]  # copies (and the vote's data) add sites
    dmr_bit, dmr_ber = by_bit["dmr"], by_ber["dmr"]
    assert _interval(dmr_ber)[0] <= dmr_bit["per_bit_relative_rate"] <= _interval(dmr_ber)[1]
    assert _interval(dmr_bit)[0] <= dmr_ber["per_bit_relative_rate"] <= _interval(dmr_bit)[1]
    per_fault = (by_fault["dmr"]["critical_count"] / by_fault["dmr"]["faults"]) / (
        by_fault["base"]["critical_count"] / by_fault["base"]["faults"])  # fmt: skip
    assert per_fault < min(_interval(dmr_bit)[0], _interval(dmr_ber)[0])  # the copies' bits fail too
    tmr_bit, tmr_ber = by_bit["tmr"], by_ber["tmr"]
    assert tmr_bit["per_bit_relative_rate"] == 0.0  # every single fault outvoted; under ber, below what they resolve
    assert tmr_ber["per_bit_relative_rate"] <= _interval(tmr_bit)[1]
    assert 1 not in flips["tmr"]  # a TMR failure takes two upsets at once (second order in the upset rate)
