"""compare.fault_models: every case under several fault models, each a campaign on the case's converted project
(compare/faultmodels.csv); measured, reused while unchanged, and absent (the table as before) when the list is
empty."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil

import pytest
import yaml
from conftest import TINY

from flow.cli import main
from flow.compare import Case, case_config
from flow.compare_table import FaultModelRow, read_table
from flow.config import Variant, config_from_dict
from flow.errors import FlowError
from flow.records import load_inject_summary
from flow.steps import run

INJECT = {"sampling": "count", "count": 40, "samples": 20, "workers": 1}
FAULT_MODELS = [
    {"name": "flip"},  # inject.* itself: the case's own campaign
    {"name": "mbu2", "mbu": 2},
    {"name": "act_stuck1", "space": "activations", "model": "stuck1"},
    {"name": "protection", "targets": ["copy", "correction"]},  # no site in the baseline
]
NAMES = [fm["name"] for fm in FAULT_MODELS]


def _config(fault_models: list[dict]) -> dict:
    compare = {"variants": ["full_tmr"], "fault_models": fault_models}
    return {**TINY, "hls": {"csim_opt": "O1"}, "inject": INJECT, "compare": compare}  # fi_runs' C-sim: cached


def _compare(path, out, fault_models: list[dict]) -> str:
    path.write_text(yaml.safe_dump(_config(fault_models)))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["compare", str(path), "--out", str(out)]) == 0
    return printed.getvalue()


@pytest.fixture(scope="module")
def fm_run(tmp_path_factory):
    """(config path, run directory, printed output, the fault-model rows as first written)."""
    base = tmp_path_factory.mktemp("compare_faultmodels")
    path, out = base / "cfg.yaml", base / "out"
    printed = _compare(path, out, FAULT_MODELS)
    return path, out, printed, read_table(out / "compare" / "faultmodels.csv", FaultModelRow)


@pytest.mark.slow
def test_a_row_per_case_and_fault_model_each_measured(fm_run, tmp_path):
    _, out, printed, rows = fm_run
    assert [(r.variant, r.fault_model) for r in rows] == [(v, n) for v in ("baseline", "full_tmr") for n in NAMES]
    by = {(r.variant, r.fault_model): r for r in rows}
    main_rows = {r.variant: r for r in read_table(out / "compare" / "table.csv")}
    for variant, row in main_rows.items():  # inject.* is the case's own campaign, not run again
        flip = by[(variant, "flip")]
        assert (flip.faults, flip.critical_count, flip.fault_sites) == (row.faults, row.critical_count, row.fault_sites)
        assert not (out / "compare" / variant / "faultmodels" / "flip").exists()
    # the activation fault model on full TMR equals an `ftflow inject`-style run of it on a copy of the case
    cfg = config_from_dict(_config(FAULT_MODELS))
    vcfg, _ = case_config(cfg, Case(Variant.FULL_TMR))
    copy = tmp_path / "full_tmr"
    shutil.copytree(out / "compare" / "full_tmr", copy, ignore=shutil.ignore_patterns("faultmodels", "inject"))
    run(dataclasses.replace(vcfg, inject=cfg.fault_model_injects()["act_stuck1"]), copy, ["inject"])
    alone = load_inject_summary(copy / "inject" / "summary.json").total
    act = by[("full_tmr", "act_stuck1")]
    assert (act.faults, act.critical_count) == (40, alone.critical.count)
    assert act.critical_rate == round(alone.critical.rate, 5)
    assert act.critical_ci95 == tuple(round(v, 4) for v in alone.critical.ci95)
    assert by[("full_tmr", "mbu2")].fault_sites < by[("full_tmr", "flip")].fault_sites  # W-1 start bits per word
    assert act.fault_sites == by[("baseline", "act_stuck1")].fault_sites  # after the vote: the same tensors
    protection = by[("baseline", "protection")]  # the baseline has no copies: a row without a campaign
    assert (protection.faults, protection.fault_sites, protection.critical_rate) == (0, 0, None)
    assert by[("full_tmr", "protection")].faults == 40 and by[("full_tmr", "protection")].per_bit_relative_rate is None
    assert by[("baseline", "mbu2")].per_bit_relative_rate in (1.0, None)
    assert "act_stuck1" in printed and "ms per fault" in printed


@pytest.mark.slow
def test_the_report_shows_the_rate_per_fault_model(fm_run):
    from flow.report import write_report

    _, out, _, rows = fm_run
    page = write_report(out).read_text()
    assert "Critical rate per fault model" in page
    flip = next(r for r in rows if r.fault_model == "flip" and r.variant == "baseline")
    assert f"{flip.critical_rate:.3f} [{flip.critical_ci95[0]:.3f}, " in page


@pytest.mark.slow
def test_a_changed_fault_model_recomputes_an_unchanged_one_is_reused(fm_run):
    path, out, _, rows = fm_run
    tmr = out / "compare" / "full_tmr"
    watched = [tmr / "case.json", tmr / "inject" / "summary.json", tmr / "faultmodels" / "act_stuck1" / "inject"
               / "summary.json"]  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in watched}
    old = load_inject_summary(tmr / "faultmodels" / "mbu2" / "inject" / "summary.json").campaign
    changed = [fm if fm["name"] != "mbu2" else {"name": "mbu2", "mbu": 3} for fm in FAULT_MODELS]
    printed = _compare(path, out, changed)
    assert {p: p.stat().st_mtime_ns for p in watched} == before  # no case rebuilt, no campaign run again
    summary = load_inject_summary(tmr / "faultmodels" / "mbu2" / "inject" / "summary.json")
    assert summary.mbu == 3 and summary.campaign != old
    again = {(r.variant, r.fault_model): r for r in read_table(out / "compare" / "faultmodels.csv", FaultModelRow)}
    assert again[("full_tmr", "mbu2")].mbu == 3
    assert again[("full_tmr", "act_stuck1")] == next(r for r in rows if (r.variant, r.fault_model) ==
                                                   ("full_tmr", "act_stuck1"))  # fmt: skip
    assert "mbu2" in printed
    _compare(path, out, FAULT_MODELS)  # back: the first campaign, resumed from its stored rows
    assert load_inject_summary(tmr / "faultmodels" / "mbu2" / "inject" / "summary.json").campaign == old


@pytest.mark.slow
def test_without_fault_models_the_table_is_as_before(fm_run):
    path, out, _, _ = fm_run
    table = (out / "compare" / "table.csv").read_bytes()
    cases = {p: p.read_text() for p in (out / "compare").glob("*/case.json")}
    printed = _compare(path, out, [])
    assert (out / "compare" / "table.csv").read_bytes() == table
    assert {p: p.read_text() for p in cases} == cases  # the fault models are no part of a case
    assert not (out / "compare" / "faultmodels.csv").exists() and "fault model" not in printed
    _compare(path, out, FAULT_MODELS)


@pytest.mark.slow
def test_a_fault_model_too_wide_for_a_case_names_it(fm_run):
    path, out, _, _ = fm_run
    path.write_text(yaml.safe_dump(_config([*FAULT_MODELS, {"name": "wide", "mbu": 7}])))
    with pytest.raises(FlowError, match=r"compare.fault_models wide on case baseline: inject.mbu: got 7; allowed"):
        main(["compare", str(path), "--out", str(out), "--debug"])


@pytest.mark.parametrize(
    "fault_models, inject, message",
    [
        ([{"name": "a", "sampling": "count"}], {}, r"unknown key 'compare.fault_models\[0\].sampling'"),
        ([{"mbu": 2}], {}, r"missing key 'compare.fault_models\[0\].name'"),
        ([{"name": "a"}, {"name": "a", "mbu": 2}], {}, r"compare.fault_models: name 'a' given twice"),
        ([{"name": "2a"}], {}, r"compare.fault_models\[0\].name: got '2a'; allowed: a letter or _"),
        ([{"name": "a", "space": "activations", "model": "ber"}], {}, r"fault_models\[0\] \(a\): model: got 'ber'"),
        ([{"name": "a", "mbu": 2, "model": "ber"}], {}, r"fault_models\[0\] \(a\): mbu: got 2 with model 'ber'"),
        ([{"name": "a", "space": "activations"}], {"evaluation": "full"}, r"\(a\): evaluation: got 'full'"),
        ([{"name": "a", "mbu": 0}], {}, r"compare.fault_models\[0\].mbu: got 0, allowed range \[1, 64\]"),
        ([{"name": "a", "targets": ["copies"]}], {}, r"fault_models\[0\].targets\[0\]: got 'copies'"),
    ],
)
def test_bad_fault_models_name_the_key(fault_models, inject, message):
    with pytest.raises(FlowError, match=message):
        config_from_dict({"inject": inject, "compare": {"fault_models": fault_models}}, "cfg.yaml")
