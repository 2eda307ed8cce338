"""The failure-rate basis of `ftflow compare`: per fault vs per bit (fault sites x critical rate per fault), its
interval, FIT, and the plots, front and goal check ranking by the configured basis."""

import csv
import importlib.util
import math
from pathlib import Path

import pytest

from flow.compare import add_failure_rates
from flow.compare_table import COLUMNS, ComparisonRow, basis_of, cell, rate, rate_interval, read_table, write_tables
from flow.config import Basis, CompareConfig, EstimateMethod, Variant, config_from_dict
from flow.errors import FlowError
from flow.stats import ratio_interval, wilson_interval

Z = 2.2364766  # two-sided normal quantile at sqrt(0.95) = 97.47 %, each proportion's share of the 95 %


def _wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval written out, to check the library's against."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _row(variant: str, kind: str, k: int, n: int, sites: int, lut: int, **extra) -> ComparisonRow:
    lo, hi = wilson_interval(k, n)
    return ComparisonRow(variant=variant, kind=Variant(kind), verified="yes", fault_free_accuracy=0.9, faults=n,
                         critical_count=k, critical_rate=round(k / n, 5), critical_ci95=(round(lo, 4), round(hi, 4)),
                         sdc_rate=0.1, masked_rate=round(0.9 - k / n, 5), mean_accuracy_under_fault=0.8,
                         fault_sites=sites, params=10, macs=20, LUT=lut, FF=2 * lut, DSP=0, BRAM_18K=1,
                         latency_cycles=30, fits_board=True, estimate_method=EstimateMethod.ANALYTIC,
                         **extra)  # fmt: skip


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
    by_name = {row.variant: row for row in _rows()}
    dmr = by_name["selective_min_0.5"]
    assert dmr.per_bit_relative_rate == 1.0 and dmr.per_bit_reduction_pct == 0.0
    lo, hi = dmr.per_bit_relative_ci95
    assert lo < 1.0 < hi
    assert by_name["baseline"].per_bit_relative_rate == 1.0  # the reference: 1 by definition
    assert by_name["baseline"].per_bit_relative_ci95 == (1.0, 1.0)
    assert cell(by_name["baseline"], "per_bit_relative_ci95") == "[1.0000, 1.0000]"
    assert by_name["pruned_0.5"].per_bit_relative_rate == 0.5  # the same rate per fault on half the bits
    assert by_name["full_tmr"].per_bit_relative_rate == 0.0 and by_name["full_tmr"].per_bit_reduction_pct == 100
    assert by_name["selective_tmr_budget10"].per_bit_relative_rate == pytest.approx(0.15)  # 3000 x 0.01 / 200


def test_fit_is_the_upset_rate_times_sites_times_the_critical_rate():
    rows = add_failure_rates([_row("baseline", "baseline", 40, 200, 2_000_000, 100)], CompareConfig(fit_per_mbit=50))
    assert rows[0].fit == pytest.approx(50 * 2 * 0.2)  # 50 FIT/Mbit x 2 Mbit x 0.2
    lo, hi = wilson_interval(40, 200)
    assert cell(rows[0], "fit_ci95") == f"[{100 * lo:.4g}, {100 * hi:.4g}]"


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
    assert rows[1].per_bit_relative_rate is None and rows[1].per_bit_relative_ci95[1] == math.inf
    assert cell(rows[1], "per_bit_relative_rate") == "" and cell(rows[1], "per_bit_relative_ci95").endswith("inf]")
    assert rate(rows[1], Basis.PER_BIT) is None and rate(rows[1], Basis.PER_FAULT) == 0.03


def test_ber_trials_compare_directly_whatever_the_sites():
    """A ber trial flips every bit with probability BER: its critical rate already counts the sites."""
    rows = [_row("baseline", "baseline", 40, 200, 1000, 1), _row("full_tmr", "full_tmr", 20, 200, 3000, 3)]
    ber = add_failure_rates(rows, CompareConfig(fit_per_mbit=100), ber=1e-4)
    assert ber[1].per_bit_relative_rate == 0.5  # not 1.5
    assert ber[0].fit == pytest.approx(100e-6 * 0.2 / 1e-4)  # P / BER upsets' worth of sites x p


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
    only_budget = [row for row in rows if row.harden_ratio is None]  # budget rows have none
    assert report_plots.cost_series(only_budget) == {"selective_tmr": series["selective_tmr"]}
    assert report_plots.critical_vs_cost(only_budget)[:4] == b"\x89PNG"  # dropped before the basis change


def test_table_shows_both_bases_and_reads_back_as_the_same_rows(tmp_path):
    rows = _rows(Basis.PER_FAULT)
    write_tables(rows, tmp_path)
    header = (tmp_path / "table.md").read_text().splitlines()[0]
    for column in ("critical_rate", "critical_reduction_pct", "fault_sites", "per_bit_relative_rate",
                   "per_bit_relative_ci95", "per_bit_reduction_pct", "fit", "basis"):  # fmt: skip
        assert f" {column} |" in header
    read = read_table(tmp_path / "table.csv")
    assert read == rows  # typed values again: intervals are pairs of floats, None where the cell is empty
    assert read[0].critical_ci95 == rows[0].critical_ci95 and isinstance(read[0].critical_ci95[0], float)
    assert read[0].harden_ratio is None and read[1].harden_ratio == 0.5 and read[0].kind is Variant.BASELINE
    assert basis_of(read) is Basis.PER_FAULT and rate(read[2], Basis.PER_BIT) == 0.5
    text = (tmp_path / "table.csv").read_text()
    lo, hi = wilson_interval(40, 200)
    assert f'baseline,baseline,yes,,,,0.9,200,40,0.2,"[{lo:.4f}, {hi:.4f}]",0.1,' in text  # the cells as they were
    assert ',per_fault,0.15,"[0.0261, 0.8634]",85.0,,0.003,"[0.000824, 0.01072]",True,analytic,,,,,\n' in text


def _rewritten(path, column: str, value: str | None) -> None:
    """The table at ``path`` with ``column`` set to ``value`` in every row (None: without the column)."""
    with open(path, newline="") as f:
        texts = list(csv.DictReader(f))
    columns = [c for c in COLUMNS if value is not None or c != column]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**t, column: value} for t in texts)


def test_a_table_cell_that_does_not_read_names_the_file_row_and_column(tmp_path):
    path = tmp_path / "table.csv"
    write_tables(_rows(Basis.PER_FAULT), tmp_path)
    _rewritten(path, "basis", None)
    assert basis_of(read_table(path)) is Basis.PER_FAULT  # written before the column existed
    for column, value, expected in [
        ("basis", "per_hour", "row 1: basis: got 'per_hour' (did you mean 'per_fault'?); allowed: per_fault, per_bit"),
        ("critical_ci95", "[0.1]", "row 1: critical_ci95: got [0.1], expected a list of 2: a number, a number"),
        ("faults", "many", "row 1: faults: got 'many', expected an integer"),
        ("fits_board", "maybe", "row 1: fits_board: got 'maybe', expected true or false"),
        ("LUT", None, "row 1: missing key 'LUT'"),
    ]:
        write_tables(_rows(Basis.PER_FAULT), tmp_path)
        _rewritten(path, column, value)
        with pytest.raises(FlowError) as info:
            read_table(path)
        assert str(info.value).startswith(f"{path} {expected}"), info.value
        assert str(info.value).endswith("; rerun ftflow compare")


def test_table_columns_follow_the_resource_keys_and_fault_groups():
    from flow.compare import OVERHEAD_KEYS
    from flow.faultlist import GROUPS
    from flow.hardware.estimate import RESOURCE_KEYS

    for names in ([f"{key}_{group}" for group in GROUPS for key in ("faults", "critical_rate")],
                  ["params", "macs", *RESOURCE_KEYS, "latency_cycles"],
                  [f"{key}_overhead_pct" for key in OVERHEAD_KEYS]):  # fmt: skip
        start = COLUMNS.index(names[0])
        assert list(COLUMNS[start : start + len(names)]) == names


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
    from flow.report import write_report

    (tmp_path / "compare").mkdir()
    write_tables(_rows(Basis.PER_BIT), tmp_path / "compare")
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


def _interval(row: ComparisonRow) -> tuple[float, float]:
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
        single.append(_row(name, "baseline", k, n, sites[name], 1))
        icfg = InjectConfig(model=FaultModel.BER, ber=ber, count=BER_TRIALS[name], targets=targets)
        k, n, flips[name] = _campaign(lib, icfg, x, y, 100 + seed)
        trials.append(_row(name, "baseline", k, n, sites[name], 1))
    by_fault = dict(zip(libs, single, strict=True))
    by_bit = dict(zip(libs, add_failure_rates(single, CompareConfig()), strict=True))
    by_ber = dict(zip(libs, add_failure_rates(trials, CompareConfig(), ber=ber), strict=True))
    print({name: (sites[name], by_bit[name], by_ber[name]) for name in libs}, f"BER {ber:.3g}", flips)
    assert sites["base"] < sites["dmr"] < sites["tmr"]  # copies (and the vote's data) add sites
    dmr_bit, dmr_ber = by_bit["dmr"], by_ber["dmr"]
    assert _interval(dmr_ber)[0] <= dmr_bit.per_bit_relative_rate <= _interval(dmr_ber)[1]
    assert _interval(dmr_bit)[0] <= dmr_ber.per_bit_relative_rate <= _interval(dmr_bit)[1]
    per_fault = (by_fault["dmr"].critical_count / by_fault["dmr"].faults) / (
        by_fault["base"].critical_count / by_fault["base"].faults)  # fmt: skip
    assert per_fault < min(_interval(dmr_bit)[0], _interval(dmr_ber)[0])  # the copies' bits fail too
    tmr_bit, tmr_ber = by_bit["tmr"], by_ber["tmr"]
    assert tmr_bit.per_bit_relative_rate == 0.0  # every single fault outvoted; under ber, below what they resolve
    assert tmr_ber.per_bit_relative_rate <= _interval(tmr_bit)[1]
    assert 1 not in flips["tmr"]  # a TMR failure takes two upsets at once (second order in the upset rate)
